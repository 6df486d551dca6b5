//! What the index answers besides search, computed over its entries (the catalogue's signed
//! records): gap analysis, hubs that look like duplicates, and matchmaking.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hubcat_protocol::bundle::Provenance;
use hubcat_protocol::record::TrlRange;
use hubcat_protocol::{tables, vocab, Record, RecordKind};
use serde::Serialize;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use super::{analysis, Entry, PublisherRef, SearchError, SearchIndex};

// ---------------------------------------------------------------------------------------------
// Gap analysis
// ---------------------------------------------------------------------------------------------

/// The columns of a gap matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GapAxis {
    /// ISO 3166-1 countries.
    Country,
    /// NUTS regions.
    Region,
}

#[derive(Debug, Clone)]
pub struct GapsQuery {
    pub by: GapAxis,
    /// Rows: these categories (all four when empty).
    pub categories: Vec<String>,
    /// Count only services with one of these technologies (any when empty).
    pub technologies: Vec<String>,
}

/// One cell: services of a category available in an area, and the hubs offering them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GapCell {
    pub services: usize,
    pub hubs: usize,
}

/// A category with no service in an area where hubs are.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct GapHole {
    pub category: String,
    /// Country code or NUTS code.
    pub area: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gaps {
    pub by: GapAxis,
    pub technologies: Vec<String>,
    /// Row order.
    pub categories: Vec<String>,
    /// Column order: every area a hub is in or a service names.
    pub areas: Vec<String>,
    /// Areas hubs are in (their profiles' country, or NUTS regions): where holes are looked
    /// for.
    pub hub_areas: Vec<String>,
    /// category → area → cell (every row and column present, zeros included).
    pub matrix: BTreeMap<String, BTreeMap<String, GapCell>>,
    /// Cells of `hub_areas` with no service.
    pub empty: Vec<GapHole>,
}

/// Does a service naming `code` in its area served cover NUTS region `region`? It does when
/// `code` is the region's country, the region itself, a region containing it, or a region
/// inside it (then part of the region is served).
fn covers(code: &str, region: &str) -> bool {
    if code.len() == 2 && vocab::is_country(code) {
        return vocab::region_country(region) == Some(code);
    }
    region.starts_with(code) || code.starts_with(region)
}

impl SearchIndex {
    /// The category × area matrix of services and hubs, and its empty cells where hubs are.
    pub fn gaps(&self, q: &GapsQuery) -> Result<Gaps, SearchError> {
        self.refresh()?;
        let inner = self.read();
        let categories: Vec<String> = if q.categories.is_empty() {
            vocab::CATEGORIES.slugs().map(str::to_owned).collect()
        } else {
            q.categories.clone()
        };
        let mut hub_areas: BTreeSet<String> = BTreeSet::new();
        for e in inner.entries.values() {
            if let Record::Profile(p) = e.record() {
                match q.by {
                    GapAxis::Country => {
                        hub_areas.insert(p.country.clone());
                    }
                    GapAxis::Region => hub_areas.extend(e.regions.iter().cloned()),
                }
            }
        }
        let services: Vec<&Entry> = inner
            .entries
            .values()
            .filter(|e| match e.record() {
                Record::Service(s) => {
                    categories.contains(&s.category)
                        && (q.technologies.is_empty()
                            || s.technologies
                                .iter()
                                .any(|t| q.technologies.iter().any(|x| x == t.slug())))
                }
                _ => false,
            })
            .collect();
        let mut areas: BTreeSet<String> = hub_areas.clone();
        for e in &services {
            match q.by {
                GapAxis::Country => areas.extend(e.countries.iter().cloned()),
                GapAxis::Region => areas.extend(e.regions.iter().cloned()),
            }
        }
        // category → area → (services, publishers)
        let mut counts: BTreeMap<&str, BTreeMap<&str, (usize, HashSet<&str>)>> = BTreeMap::new();
        for e in &services {
            let Some(category) = e.record().category() else {
                continue;
            };
            let row = counts.entry(category).or_default();
            let served: Vec<&str> = match q.by {
                GapAxis::Country => e.countries.iter().map(String::as_str).collect(),
                GapAxis::Region => {
                    let codes: &[String] = match e.record() {
                        Record::Service(s) => &s.area_served,
                        _ => &[],
                    };
                    areas
                        .iter()
                        .filter(|a| codes.iter().any(|c| covers(c, a)))
                        .map(String::as_str)
                        .collect()
                }
            };
            for area in served {
                let cell = row.entry(area).or_default();
                cell.0 += 1;
                cell.1.insert(e.view.publisher.as_str());
            }
        }
        let mut matrix = BTreeMap::new();
        let mut empty = Vec::new();
        for category in &categories {
            let row = counts.get(category.as_str());
            let mut cells = BTreeMap::new();
            for area in &areas {
                let cell = row
                    .and_then(|r| r.get(area.as_str()))
                    .map(|(services, hubs)| GapCell {
                        services: *services,
                        hubs: hubs.len(),
                    })
                    .unwrap_or_default();
                if cell.services == 0 && hub_areas.contains(area) {
                    empty.push(GapHole {
                        category: category.clone(),
                        area: area.clone(),
                    });
                }
                cells.insert(area.clone(), cell);
            }
            matrix.insert(category.clone(), cells);
        }
        Ok(Gaps {
            by: q.by,
            technologies: q.technologies.clone(),
            categories,
            areas: areas.into_iter().collect(),
            hub_areas: hub_areas.into_iter().collect(),
            matrix,
            empty,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicates
// ---------------------------------------------------------------------------------------------

/// A profile in a duplicate group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateProfile {
    pub id: String,
    pub publisher: String,
    pub name: String,
    pub title: String,
    pub country: String,
    pub website: Option<String>,
    pub provenance: Provenance,
}

/// Profiles of different publishers that look like one organisation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateGroup {
    /// `website` (same website domain) or `name` (same normalised name or title).
    pub reason: &'static str,
    /// The shared domain or normalised name.
    pub key: String,
    pub profiles: Vec<DuplicateProfile>,
}

/// The host of a website URL, lowercased, without `www.`.
pub fn website_domain(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest
        .split(['/', '?', '#'])
        .next()?
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    (!host.is_empty()).then_some(host)
}

/// A name lowercased, ASCII-folded, punctuation dropped and spaces collapsed.
pub fn normalised_name(name: &str) -> String {
    use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    analysis::terms(&mut analyzer, name).join(" ")
}

impl SearchIndex {
    /// Groups of profiles from different publishers with the same website domain or the same
    /// normalised name or title.
    pub fn duplicates(&self) -> Result<Vec<DuplicateGroup>, SearchError> {
        self.refresh()?;
        let inner = self.read();
        let mut by_key: BTreeMap<(&'static str, String), Vec<&Entry>> = BTreeMap::new();
        for e in inner.entries.values() {
            let Record::Profile(p) = e.record() else {
                continue;
            };
            let mut keys: BTreeSet<(&'static str, String)> = BTreeSet::new();
            if let Some(d) = p.website.as_deref().and_then(website_domain) {
                keys.insert(("website", d));
            }
            for name in std::iter::once(&p.name).chain(p.title.values()) {
                let n = normalised_name(name);
                if !n.is_empty() {
                    keys.insert(("name", n));
                }
            }
            for k in keys {
                by_key.entry(k).or_default().push(e);
            }
        }
        let mut groups = Vec::new();
        for ((reason, key), mut entries) in by_key {
            let publishers: HashSet<&str> =
                entries.iter().map(|e| e.view.publisher.as_str()).collect();
            if publishers.len() < 2 {
                continue;
            }
            entries.sort_by(|a, b| a.view.id.cmp(&b.view.id));
            let profiles = entries
                .iter()
                .filter_map(|e| match e.record() {
                    Record::Profile(p) => Some(DuplicateProfile {
                        id: e.view.id.clone(),
                        publisher: e.view.publisher.clone(),
                        name: p.name.clone(),
                        title: e.record().title(None).to_owned(),
                        country: p.country.clone(),
                        website: p.website.clone(),
                        provenance: e.view.provenance.clone(),
                    }),
                    _ => None,
                })
                .collect();
            groups.push(DuplicateGroup {
                reason,
                key,
                profiles,
            });
        }
        Ok(groups)
    }
}

// ---------------------------------------------------------------------------------------------
// Matchmaking
// ---------------------------------------------------------------------------------------------

/// A validated need (see `params::MatchParams`).
#[derive(Debug, Clone)]
pub struct MatchRequest {
    pub need: String,
    pub country: String,
    pub region: Option<String>,
    pub language: Option<String>,
    pub category: Option<String>,
    pub technologies: Vec<String>,
    pub audience: Vec<String>,
    pub trl: Option<u8>,
    pub limit: usize,
}

/// Weights of the parts of a match score (they sum to 1).
const W_TEXT: f32 = 0.40;
const W_AREA: f32 = 0.25;
const W_LANGUAGE: f32 = 0.20;
const W_TRL: f32 = 0.05;
const W_TECHNOLOGIES: f32 = 0.05;
const W_AUDIENCE: f32 = 0.05;
/// Area scores: a service in the requester's region, in its country, or open across borders.
const AREA_REGION: f32 = 1.0;
const AREA_COUNTRY: f32 = 0.7;
const AREA_CROSS_BORDER: f32 = 0.35;

/// Each part of a match score, from 0 to 1.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MatchScores {
    /// Text relevance, relative to the best text match.
    pub text: f32,
    pub area: f32,
    pub language: f32,
    pub trl: f32,
    pub technologies: f32,
    pub audience: f32,
}

/// A service matched to a need, with why.
#[derive(Debug, Clone, Serialize)]
pub struct MatchResult {
    pub id: String,
    pub title: String,
    pub publisher: PublisherRef,
    pub category: String,
    /// Weighted sum of `scores`.
    pub score: f32,
    pub scores: MatchScores,
    /// Why it matched, one sentence per part that counted.
    pub reasons: Vec<String>,
    pub area_served: Vec<String>,
    pub languages: Vec<String>,
    pub trl: Option<TrlRange>,
    pub stale: bool,
    pub provenance: Provenance,
}

fn language_name(code: &str) -> &str {
    tables::LANGUAGES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .and_then(|i| tables::LANGUAGES.get(i))
        .map_or(code, |(_, n)| n)
}

/// The query words found in a record's text (stemmed per language, or as a prefix).
fn matched_words(entry: &Entry, words: &[String]) -> Vec<String> {
    let (title, description) = super::texts(entry.record());
    let mut terms: HashMap<&'static str, HashSet<String>> = HashMap::new();
    for (lang, text) in title.iter().chain(description.into_iter().flatten()) {
        let name = analysis::analyzer_for(lang);
        let mut a = analysis::analyzer(name);
        terms
            .entry(name)
            .or_default()
            .extend(analysis::terms(&mut a, text));
    }
    let mut out = Vec::new();
    for word in words {
        let found = terms.iter().any(|(name, set)| {
            let mut a = analysis::analyzer(name);
            analysis::terms(&mut a, word).iter().any(|t| {
                set.contains(t)
                    || (*name != analysis::OTHER
                        && t.chars().count() >= super::PREFIX_MIN_CHARS
                        && set.iter().any(|s| s.starts_with(t.as_str())))
            })
        });
        if found && !out.contains(word) {
            out.push(word.clone());
        }
    }
    out
}

impl SearchIndex {
    /// Services for a need, ranked by text relevance, area served, language, TRL fit,
    /// technologies and audience; each with the reasons it matched.
    pub fn match_services(&self, req: &MatchRequest) -> Result<Vec<MatchResult>, SearchError> {
        self.refresh()?;
        let now = hubcat_protocol::now_ms() / 1000;
        let inner = self.read();
        let f = &inner.fields;
        // Text relevance over services (any query word may match).
        let mut text_scores: HashMap<u64, f32> = HashMap::new();
        if let Some(text) = inner.text_query(&req.need, req.language.as_deref(), 0.0) {
            let kind: Box<dyn Query> = Box::new(ConstScoreQuery::new(
                Box::new(TermQuery::new(
                    Term::from_field_text(f.kind, RecordKind::Service.as_str()),
                    IndexRecordOption::Basic,
                )),
                0.0,
            ));
            let query = BooleanQuery::new(vec![(Occur::Must, text), (Occur::Must, kind)]);
            text_scores = inner
                .hits(&query, true)?
                .into_iter()
                .map(|(s, o)| (o, s))
                .collect();
        }
        let best = text_scores.values().copied().fold(0.0f32, f32::max);
        let mut scored: Vec<(f32, MatchScores, &Entry)> = Vec::new();
        for (ord, e) in &inner.entries {
            let Record::Service(s) = e.record() else {
                continue;
            };
            if req.category.as_ref().is_some_and(|c| *c != s.category) {
                continue;
            }
            let mut m = MatchScores {
                text: match (text_scores.get(ord), best > 0.0) {
                    (Some(score), true) => score / best,
                    _ => 0.0,
                },
                ..Default::default()
            };
            if !req.technologies.is_empty() {
                let have = s
                    .technologies
                    .iter()
                    .filter(|t| req.technologies.iter().any(|x| x == t.slug()))
                    .count();
                m.technologies = have as f32 / req.technologies.len() as f32;
            }
            // Nothing about the need in it: not a match, wherever it is.
            if m.text == 0.0 && m.technologies == 0.0 {
                continue;
            }
            let in_region = req.region.as_ref().is_some_and(|r| {
                e.regions
                    .iter()
                    .any(|c| r.starts_with(c.as_str()) || c.starts_with(r.as_str()))
            });
            m.area = if in_region {
                AREA_REGION
            } else if e.countries.contains(&req.country) {
                AREA_COUNTRY
            } else if s.cross_border == Some(true) {
                AREA_CROSS_BORDER
            } else {
                0.0
            };
            if let Some(l) = &req.language {
                if e.languages.contains(l) {
                    m.language = 1.0;
                }
            }
            if let Some(want) = req.trl {
                m.trl = match &s.trl {
                    Some(r) if (r.min..=r.max).contains(&want) => 1.0,
                    Some(r) => {
                        let away = if want < r.min {
                            r.min - want
                        } else {
                            want - r.max
                        };
                        (1.0 - 0.25 * f32::from(away)).max(0.0)
                    }
                    None => 0.5,
                };
            }
            if s.audience.iter().any(|a| req.audience.contains(a)) {
                m.audience = 1.0;
            }
            let score = W_TEXT * m.text
                + W_AREA * m.area
                + W_LANGUAGE * m.language
                + W_TRL * m.trl
                + W_TECHNOLOGIES * m.technologies
                + W_AUDIENCE * m.audience;
            scored.push((score, m, e));
        }
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.2.view.id.cmp(&b.2.view.id))
        });
        scored.truncate(req.limit);
        let words = analysis::words(&req.need);
        Ok(scored
            .into_iter()
            .filter_map(|(score, m, e)| {
                let Record::Service(s) = e.record() else {
                    return None;
                };
                let reasons = self.reasons(req, &m, e, s, &words);
                Some(MatchResult {
                    id: e.view.id.clone(),
                    title: e.record().title(req.language.as_deref()).to_owned(),
                    publisher: inner.publisher_of(&e.view.publisher),
                    category: s.category.clone(),
                    score,
                    scores: m,
                    reasons,
                    area_served: s.area_served.clone(),
                    languages: e.languages.clone(),
                    trl: s.trl,
                    stale: self.is_stale(e.confirmed, now),
                    provenance: e.view.provenance.clone(),
                })
            })
            .collect())
    }

    fn reasons(
        &self,
        req: &MatchRequest,
        m: &MatchScores,
        e: &Entry,
        s: &hubcat_protocol::record::Service,
        words: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if m.text > 0.0 {
            let found = matched_words(e, words);
            let shown: Vec<String> = found.iter().map(|w| format!("“{w}”")).collect();
            out.push(if shown.is_empty() {
                format!("text relevance {:.2}", m.text)
            } else {
                format!(
                    "text matches {} (relevance {:.2})",
                    shown.join(", "),
                    m.text
                )
            });
        }
        if m.area >= AREA_REGION {
            let r = req.region.as_deref().unwrap_or_default();
            out.push(format!("serves your region {r}"));
        } else if m.area >= AREA_COUNTRY {
            out.push(format!("serves your country {}", req.country));
        } else if m.area >= AREA_CROSS_BORDER {
            out.push(format!(
                "cross-border service (serves {}), not specifically {}",
                e.countries.join(", "),
                req.country
            ));
        } else {
            out.push(format!(
                "does not serve {} (serves {})",
                req.country,
                e.countries.join(", ")
            ));
        }
        if let Some(l) = &req.language {
            if m.language > 0.0 {
                out.push(format!("offered in {} ({l})", language_name(l)));
            } else {
                out.push(format!(
                    "not offered in {} (offered in {})",
                    language_name(l),
                    e.languages.join(", ")
                ));
            }
        }
        if let Some(want) = req.trl {
            out.push(match &s.trl {
                Some(r) if m.trl >= 1.0 => format!("TRL {}–{} fits your TRL {want}", r.min, r.max),
                Some(r) => format!("TRL {}–{} is outside your TRL {want}", r.min, r.max),
                None => "TRL range not stated".to_owned(),
            });
        }
        if m.technologies > 0.0 {
            let shared: Vec<&str> = s
                .technologies
                .iter()
                .map(|t| t.slug())
                .filter(|t| req.technologies.iter().any(|x| x == t))
                .collect();
            out.push(format!("technologies: {}", shared.join(", ")));
        }
        if m.audience > 0.0 {
            let shared: Vec<&str> = s
                .audience
                .iter()
                .map(String::as_str)
                .filter(|a| req.audience.iter().any(|x| x == a))
                .collect();
            out.push(format!("for {}", shared.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_names_normalise() {
        assert_eq!(
            website_domain("https://WWW.Sirris.be/en/about?x=1").as_deref(),
            Some("sirris.be")
        );
        assert_eq!(
            website_domain("http://user@hub.example.org:8080").as_deref(),
            Some("hub.example.org")
        );
        assert_eq!(
            normalised_name("Andalucía  Agrotech — Digital Innovation Hub!"),
            "andalucia agrotech digital innovation hub"
        );
    }

    #[test]
    fn a_service_covers_its_regions_country_and_sub_regions() {
        assert!(covers("SE", "SE11"));
        assert!(covers("GR", "EL52"));
        assert!(covers("SE1", "SE11"));
        assert!(covers("SE110", "SE11"));
        assert!(!covers("SE12", "SE11"));
        assert!(!covers("ES", "SE11"));
    }
}
