//! Benchmark records shaped like the real catalogue.
//!
//! Publishers are hubs with deterministic keys; each record is a service offering or a
//! digital-health practice with a two-language title and description of about 650 bytes of
//! text, and vocabulary terms, countries, NUTS regions and languages that pass validation.
//! The text comes from the EC EDIH catalogue export (`shared/data/edih_catalogue.json`) when
//! it is there; that export holds English only, so the second-language entry reuses English
//! text of the same size under the hub's national language code. Without the file the text is
//! generated from a small word list, so a fresh clone can still run the bench.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hubcat_protocol::{tables, vocab, DocId, HubKey, Record};
use serde_json::{json, Value};

/// Bytes of English description per record (cut from a hub description at word boundaries).
const DESCRIPTION_EN_BYTES: usize = 380;
/// Bytes of second-language description per record.
const DESCRIPTION_LOCAL_BYTES: usize = 160;
/// Longest title we build (the layout allows 300 characters).
const TITLE_MAX_BYTES: usize = 110;
/// Descriptions shorter than this are not used as text sources (cut windows need room).
const MIN_SOURCE_DESCRIPTION: usize = 600;

/// Where the record text came from, for the report.
#[derive(Debug, Clone)]
pub enum TextSource {
    /// The EDIH export, with the number of hubs read from it.
    SharedData { path: PathBuf, hubs: usize },
    /// Generated text: the shared data folder is absent.
    Generated { looked_for: PathBuf },
}

impl TextSource {
    pub fn describe(&self) -> String {
        match self {
            TextSource::SharedData { path, hubs } => {
                format!("{} ({hubs} hubs)", path.display())
            }
            TextSource::Generated { .. } => "generated text".to_owned(),
        }
    }
}

/// One hub of the source data: what a publisher borrows its name, country and text from.
#[derive(Debug, Clone)]
struct Hub {
    name: String,
    title: String,
    country: String,
    description: String,
}

/// A publishing hub: its key, its document and where it works.
pub struct Publisher {
    pub key: HubKey,
    pub doc: DocId,
    pub name: String,
    pub title: String,
    pub country: String,
    /// The hub's national language (ISO 639-1), used for the second text entry.
    pub language: &'static str,
    /// NUTS level-2 regions of the hub's country (may be empty outside NUTS).
    pub regions: Vec<&'static str>,
    /// A hostname for contact addresses and landing pages.
    pub host: String,
}

pub struct Corpus {
    pub publishers: Vec<Publisher>,
    /// Long descriptions to cut record text from.
    texts: Vec<String>,
    pub source: TextSource,
}

/// The default location of the shared reference data, relative to the workspace root.
pub fn shared_data_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/edih_catalogue.json")
}

/// A deterministic secret key for publisher `index` (distinct per index and per `domain`).
pub fn secret_for(domain: u64, index: u64) -> [u8; 32] {
    let mut rng = SplitMix64::new(domain.rotate_left(32) ^ index.wrapping_mul(0x9e37_79b9));
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    seed
}

impl Corpus {
    /// `publishers` hubs, with text from `data` when that file exists.
    pub fn load(publishers: usize, data: &Path) -> anyhow::Result<Corpus> {
        if publishers == 0 {
            bail!("--publishers must be at least 1");
        }
        let (hubs, source) = if data.exists() {
            let hubs = read_hubs(data)?;
            let source = TextSource::SharedData {
                path: data.to_path_buf(),
                hubs: hubs.len(),
            };
            (hubs, source)
        } else {
            let source = TextSource::Generated {
                looked_for: data.to_path_buf(),
            };
            (generated_hubs(), source)
        };
        let texts: Vec<String> = hubs
            .iter()
            .map(|h| h.description.clone())
            .filter(|d| d.len() >= MIN_SOURCE_DESCRIPTION)
            .collect();
        if texts.is_empty() {
            bail!(
                "no hub description of at least {MIN_SOURCE_DESCRIPTION} bytes to take text from"
            );
        }
        let mut out = Vec::with_capacity(publishers);
        for p in 0..publishers {
            let hub = &hubs[p % hubs.len()];
            let key = HubKey::from_secret_bytes(&secret_for(1, p as u64))
                .context("deterministic publisher key")?;
            let country = if vocab::is_country(&hub.country) {
                hub.country.clone()
            } else {
                "BE".to_owned()
            };
            let regions = tables::REGIONS
                .iter()
                .filter(|(code, _, level)| {
                    *level == 2 && vocab::region_country(code) == Some(country.as_str())
                })
                .map(|(code, _, _)| *code)
                .collect();
            // Hubs repeat once there are more publishers than hubs: number the copies.
            let copy = p / hubs.len();
            let name = if copy == 0 {
                hub.name.clone()
            } else {
                format!("{} {}", hub.name, copy + 1)
            };
            out.push(Publisher {
                doc: DocId::Hub(key.id()),
                key,
                host: format!("hub{p:04}.{}.example.eu", country.to_lowercase()),
                language: national_language(&country),
                regions,
                title: hub.title.clone(),
                name,
                country,
            });
        }
        Ok(Corpus {
            publishers: out,
            texts,
            source,
        })
    }

    /// `n` records spread round-robin over the publishers: `(publisher index, record)`.
    /// Every record is parsed and validated with [`Record::from_value`].
    pub fn records(&self, n: usize) -> anyhow::Result<Vec<(usize, Record)>> {
        (0..n)
            .map(|i| {
                let p = i % self.publishers.len();
                let value = self.record_value(i, p);
                let record = Record::from_value(value)
                    .with_context(|| format!("generated record {i} does not validate"))?;
                Ok((p, record))
            })
            .collect()
    }

    fn record_value(&self, i: usize, p: usize) -> Value {
        let publisher = &self.publishers[p];
        let local = i / self.publishers.len();
        let mut rng = SplitMix64::new(i as u64);
        let second_language = if publisher.language == "en" {
            "fr"
        } else {
            publisher.language
        };
        let text_en = &self.texts[(p * 31 + local * 7) % self.texts.len()];
        let text_local = &self.texts[(p * 31 + local * 7 + 1) % self.texts.len()];
        let description = json!({
            "en": window(text_en, local * 97, DESCRIPTION_EN_BYTES),
            second_language: window(text_local, local * 53 + 11, DESCRIPTION_LOCAL_BYTES),
        });
        let technologies = rng.pick_some(&vocab::TECHNOLOGIES, 1, 3);
        let mut sectors = rng.pick_some(&vocab::SECTORS, 1, 2);
        // Digital health first: most records name health care.
        if rng.below(3) > 0 && !sectors.contains(&"health-care") {
            sectors.insert(0, "health-care");
        }
        let languages = if second_language == "en" {
            vec!["en"]
        } else {
            vec!["en", second_language]
        };
        let tech_label = vocab::TECHNOLOGIES.label(technologies[0]);
        let hub_title = cut(&publisher.title, 60);
        if i % 10 < 7 {
            let category = rng.pick(&vocab::CATEGORIES);
            let title_en = cut(
                &format!(
                    "{} — {tech_label} for {}: {hub_title}",
                    vocab::CATEGORIES.label(category),
                    vocab::SECTORS.label(sectors[0]).to_lowercase()
                ),
                TITLE_MAX_BYTES,
            );
            let title_local = cut(
                &format!("{tech_label} ({}) — {}", publisher.name, publisher.country),
                TITLE_MAX_BYTES,
            );
            let trl_min = 1 + rng.below(6) as u8;
            let trl_max = trl_min + rng.below(10 - trl_min as u64) as u8;
            let mut area_served = vec![publisher.country.clone()];
            if !publisher.regions.is_empty() {
                let r = publisher.regions[rng.below(publisher.regions.len() as u64) as usize];
                area_served.push(r.to_owned());
            }
            let slug = format!("svc-{local:05}");
            json!({
                "kind": "service",
                "id": slug,
                "title": {"en": title_en, second_language: title_local},
                "description": description,
                "category": category,
                "technologies": technologies,
                "sectors": sectors,
                "audience": rng.pick_some(&vocab::AUDIENCES, 1, 2),
                "trl": {"min": trl_min, "max": trl_max},
                "area_served": area_served,
                "cross_border": rng.below(4) == 0,
                "languages": languages,
                "delivery": rng.pick(&vocab::DELIVERY),
                "cost": rng.pick(&vocab::COST),
                "contact": format!("info@{}", publisher.host),
                "landing_page": format!("https://{}/services/{slug}", publisher.host),
                "valid_from": "2025-01-01",
                "valid_until": "2027-12-31",
            })
        } else {
            let practice_type = rng.pick(&vocab::PRACTICE_TYPES);
            let title_en = cut(
                &format!(
                    "{} in {}: {tech_label} — {hub_title}",
                    vocab::PRACTICE_TYPES.label(practice_type),
                    vocab::SECTORS.label(sectors[0]).to_lowercase()
                ),
                TITLE_MAX_BYTES,
            );
            let title_local = cut(
                &format!("{tech_label} ({}) — {}", publisher.name, publisher.country),
                TITLE_MAX_BYTES,
            );
            let slug = format!("prc-{local:05}");
            json!({
                "kind": "practice",
                "id": slug,
                "title": {"en": title_en, second_language: title_local},
                "description": description,
                "practice_type": practice_type,
                "maturity": rng.pick(&vocab::MATURITY),
                "scale": rng.pick(&vocab::SCALE),
                "trl": 1 + rng.below(9),
                "owner": cut(&publisher.title, 120),
                "countries": [publisher.country],
                "languages": languages,
                "evidence": [format!("https://{}/practices/{slug}/evaluation", publisher.host)],
                "open_to_twinning": rng.below(2) == 0,
            })
        }
    }
}

/// Bytes of people-readable text in a record (every title and description entry).
pub fn text_bytes(record: &Record) -> usize {
    let Ok(value) = serde_json::to_value(record) else {
        return 0;
    };
    ["title", "description"]
        .iter()
        .filter_map(|f| value.get(f).and_then(Value::as_object))
        .flat_map(|m| m.values())
        .filter_map(Value::as_str)
        .map(str::len)
        .sum()
}

fn read_hubs(path: &Path) -> anyhow::Result<Vec<Hub>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(items) = value.as_array() else {
        bail!("{} is not a JSON array of hubs", path.display());
    };
    let field = |h: &Value, k: &str| {
        h.get(k)
            .and_then(Value::as_str)
            .map(clean)
            .unwrap_or_default()
    };
    let hubs: Vec<Hub> = items
        .iter()
        .map(|h| Hub {
            name: cut(&field(h, "name"), 60),
            title: field(h, "title"),
            country: field(h, "country"),
            description: field(h, "description"),
        })
        .filter(|h| !h.name.trim().is_empty() && !h.title.trim().is_empty())
        .collect();
    if hubs.is_empty() {
        bail!("{} holds no hub with a name and a title", path.display());
    }
    Ok(hubs)
}

/// Hubs with generated text, for machines without the shared data folder.
fn generated_hubs() -> Vec<Hub> {
    const WORDS: &[&str] = &[
        "digital",
        "health",
        "innovation",
        "hub",
        "services",
        "small",
        "medium",
        "enterprises",
        "public",
        "sector",
        "data",
        "artificial",
        "intelligence",
        "testing",
        "experimentation",
        "facilities",
        "regional",
        "partners",
        "training",
        "skills",
        "investment",
        "support",
        "ecosystem",
        "networking",
        "hospitals",
        "patients",
        "care",
        "telemonitoring",
        "interoperability",
        "cloud",
        "cybersecurity",
        "pilots",
        "adoption",
        "transformation",
        "university",
        "clinic",
        "platform",
        "validation",
        "market",
        "access",
        "procurement",
        "regulation",
        "evidence",
        "outcomes",
        "citizens",
        "municipalities",
        "manufacturing",
        "robotics",
        "sensors",
        "twins",
        "analytics",
        "privacy",
        "secure",
        "open",
        "standards",
        "European",
        "cross-border",
        "collaboration",
        "and",
        "the",
        "for",
        "with",
        "of",
        "to",
        "in",
        "a",
        "our",
        "their",
        "new",
    ];
    const COUNTRIES: &[&str] = &[
        "IT", "DE", "ES", "FR", "PL", "HR", "PT", "NL", "BE", "BG", "SE", "HU", "AT", "CZ", "SI",
        "LT", "RO", "FI", "GR", "IE", "DK", "SK", "LV", "EE", "CY", "MT", "LU",
    ];
    (0..400u64)
        .map(|h| {
            let mut rng = SplitMix64::new(h ^ 0x5eed);
            let mut description = String::new();
            while description.len() < 1800 {
                let len = 8 + rng.below(14);
                for w in 0..len {
                    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                    if w == 0 {
                        let mut c = word.chars();
                        if let Some(first) = c.next() {
                            description.extend(first.to_uppercase());
                            description.push_str(c.as_str());
                        }
                    } else {
                        description.push(' ');
                        description.push_str(word);
                    }
                }
                description.push_str(". ");
            }
            Hub {
                name: format!("DIH{h:03}"),
                title: format!("Digital Innovation Hub {h:03} for Health and Industry"),
                country: COUNTRIES[h as usize % COUNTRIES.len()].to_owned(),
                description: description.trim_end().to_owned(),
            }
        })
        .collect()
}

/// Control characters refused by validation become spaces; runs of whitespace collapse.
fn clean(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end().to_owned()
}

/// About `max` bytes of `text` starting near `start`, cut at word boundaries; wraps to the
/// beginning when the rest of the text is too short.
fn window(text: &str, start: usize, max: usize) -> String {
    let len = text.len();
    let mut from = if len > max { start % (len - max) } else { 0 };
    while !text.is_char_boundary(from) {
        from += 1;
    }
    if from > 0 {
        // Start at the next word.
        if let Some(space) = text[from..].find(' ') {
            from += space + 1;
        }
    }
    let rest = &text[from..];
    let piece = cut(rest, max);
    let piece = match piece.rfind(' ') {
        Some(space) if piece.len() == max || piece.len() + 8 < rest.len() => &piece[..space],
        _ => piece.as_str(),
    };
    let piece = piece.trim();
    if piece.len() < max / 2 {
        cut(text, max)
    } else {
        piece.to_owned()
    }
}

/// The main national language of a country (ISO 639-1), `en` when not listed.
fn national_language(country: &str) -> &'static str {
    match country {
        "AT" | "DE" | "LI" => "de",
        "BE" | "NL" => "nl",
        "FR" | "LU" => "fr",
        "IT" => "it",
        "ES" => "es",
        "PT" => "pt",
        "PL" => "pl",
        "HR" => "hr",
        "BG" => "bg",
        "SE" => "sv",
        "HU" => "hu",
        "CZ" => "cs",
        "SI" => "sl",
        "LT" => "lt",
        "LV" => "lv",
        "EE" => "et",
        "UA" => "uk",
        "RO" => "ro",
        "FI" => "fi",
        "GR" | "CY" => "el",
        "TR" => "tr",
        "DK" => "da",
        "SK" => "sk",
        "RS" | "ME" => "sr",
        "MK" => "mk",
        "AL" | "XK" => "sq",
        "NO" => "no",
        "BA" => "bs",
        "IS" => "is",
        "MT" => "mt",
        _ => "en",
    }
}

/// A small deterministic generator (SplitMix64): the same records on every run and machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed ^ 0x853c_49e6_748f_ea9b)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; returns 0 for n = 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pick(&mut self, v: &vocab::Vocabulary) -> &'static str {
        let slugs: Vec<&'static str> = v.slugs().collect();
        slugs[self.below(slugs.len() as u64) as usize]
    }

    /// Between `min` and `max` distinct slugs of `v`.
    fn pick_some(&mut self, v: &vocab::Vocabulary, min: usize, max: usize) -> Vec<&'static str> {
        let mut slugs: Vec<&'static str> = v.slugs().collect();
        let want = min + self.below((max - min + 1) as u64) as usize;
        let mut out = Vec::with_capacity(want);
        while out.len() < want && !slugs.is_empty() {
            let i = self.below(slugs.len() as u64) as usize;
            out.push(slugs.swap_remove(i));
        }
        out
    }
}
