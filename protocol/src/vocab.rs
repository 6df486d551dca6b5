//! Controlled vocabularies of the record layout (RECORDS.md): every slug the node accepts, with
//! its English label. The node shows labels, accepts slugs, and lists the valid slugs when it
//! refuses one.

/// A named, closed list of `(slug, label)` pairs.
#[derive(Debug)]
pub struct Vocabulary {
    /// What the list is called in messages ("category", "technology" …).
    pub name: &'static str,
    pub terms: &'static [(&'static str, &'static str)],
}

impl Vocabulary {
    pub fn contains(&self, slug: &str) -> bool {
        self.terms.iter().any(|(s, _)| *s == slug)
    }

    /// The English label of `slug`, or the slug itself when it is not in the list.
    pub fn label<'a>(&self, slug: &'a str) -> &'a str {
        match self.terms.iter().find(|(s, _)| *s == slug) {
            Some((_, label)) => label,
            None => slug,
        }
    }

    /// The valid slugs, comma separated, for error messages.
    pub fn choices(&self) -> String {
        self.terms
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn slugs(&self) -> impl Iterator<Item = &'static str> {
        self.terms.iter().map(|(s, _)| *s)
    }
}

pub static HUB_TYPES: Vocabulary = Vocabulary {
    name: "hub type",
    terms: &[
        ("edih", "European Digital Innovation Hub"),
        ("seal-of-excellence", "Seal of Excellence"),
        ("dih", "Digital Innovation Hub"),
        ("living-lab", "Living lab"),
        ("testbed", "Testbed"),
        ("other", "Other"),
    ],
};

pub static CATEGORIES: Vocabulary = Vocabulary {
    name: "category",
    terms: &[
        ("test-before-invest", "Test before invest"),
        ("skills-and-training", "Skills and training"),
        ("support-to-find-investment", "Support to find investments"),
        (
            "ecosystem-and-networking",
            "Innovation ecosystem and networking",
        ),
    ],
};

pub static TECHNOLOGIES: Vocabulary = Vocabulary {
    name: "technology",
    terms: &[
        ("additive-manufacturing", "Additive manufacturing"),
        (
            "artificial-intelligence",
            "Artificial intelligence and decision support",
        ),
        ("bi-tools", "Business intelligence tools"),
        ("big-data", "Big data"),
        ("blockchain", "Blockchain"),
        ("cloud-services", "Cloud services"),
        ("communication-networks", "Communication networks"),
        ("cyber-physical-systems", "Cyber-physical systems"),
        ("cybersecurity", "Cybersecurity"),
        ("digital-twins", "Digital twins"),
        ("displays", "Displays"),
        ("gamification", "Gamification"),
        ("hpc", "High-performance computing"),
        ("human-computer-interaction", "Human-computer interaction"),
        ("industrial-biotechnology", "Industrial biotechnology"),
        ("internet-services", "Internet services"),
        ("iot", "Internet of things"),
        ("laser-manufacturing", "Laser-based manufacturing"),
        ("location-based-applications", "Location-based applications"),
        ("logistics", "Logistics"),
        ("mobility", "Mobility"),
        ("media-technologies", "Media technologies"),
        ("organic-electronics", "Organic electronics"),
        ("photonics", "Photonics"),
        ("quantum", "Quantum technologies"),
        ("robotics", "Robotics"),
        ("semiconductors", "Semiconductors"),
        ("sensors-and-vision", "Sensors and vision"),
        ("simulation-and-modelling", "Simulation and modelling"),
        ("software-architectures", "Software architectures"),
        ("virtual-reality", "Virtual and augmented reality"),
    ],
};

pub static SECTORS: Vocabulary = Vocabulary {
    name: "sector",
    terms: &[
        ("health-care", "Health care"),
        ("life-sciences", "Life sciences"),
        ("public-administration", "Public administration"),
        ("education", "Education"),
        ("agrifood", "Agriculture and food"),
        ("manufacturing", "Manufacturing"),
        ("energy", "Energy"),
        ("environment", "Environment"),
        ("transport-and-mobility", "Transport and mobility"),
        ("smart-city", "Smart city"),
        ("security", "Security"),
        ("financial", "Financial services"),
        ("cultural-and-creative", "Cultural and creative industries"),
        ("tourism", "Tourism"),
        ("construction", "Construction"),
        ("maritime", "Maritime"),
        ("space", "Space"),
        ("telecommunications", "Telecommunications"),
        ("retail-and-distribution", "Retail and distribution"),
        ("other", "Other"),
    ],
};

pub static AUDIENCES: Vocabulary = Vocabulary {
    name: "audience",
    terms: &[
        ("sme", "SMEs"),
        ("small-midcap", "Small mid-caps"),
        ("startup", "Start-ups"),
        ("public-sector", "Public sector"),
        ("health-provider", "Health providers"),
        ("research", "Research organisations"),
    ],
};

pub static DELIVERY: Vocabulary = Vocabulary {
    name: "delivery mode",
    terms: &[
        ("onsite", "On site"),
        ("remote", "Remote"),
        ("hybrid", "Hybrid"),
    ],
};

pub static COST: Vocabulary = Vocabulary {
    name: "cost model",
    terms: &[
        ("free", "Free"),
        ("subsidised", "Subsidised"),
        ("paid", "Paid"),
    ],
};

pub static PRACTICE_TYPES: Vocabulary = Vocabulary {
    name: "practice type",
    terms: &[
        ("policy", "Policy"),
        ("strategy", "Strategy"),
        ("app", "App"),
        ("complex-solution", "Complex solution"),
        ("assessment-framework", "Assessment framework"),
        ("model", "Model"),
        ("method-or-tool", "Method or tool"),
    ],
};

pub static MATURITY: Vocabulary = Vocabulary {
    name: "maturity",
    terms: &[
        ("idea", "Idea"),
        ("pilot", "Pilot"),
        ("deployed", "Deployed"),
        ("scaled", "Scaled"),
        ("retired", "Retired"),
    ],
};

pub static SCALE: Vocabulary = Vocabulary {
    name: "scale",
    terms: &[
        ("local", "Local"),
        ("regional", "Regional"),
        ("national", "National"),
        ("cross-border", "Cross-border"),
    ],
};

/// Is `code` an ISO 3166-1 alpha-2 country code (or `XK`)?
pub fn is_country(code: &str) -> bool {
    COUNTRY_SET.contains(code)
}

/// Is `code` an ISO 639-1 language code?
pub fn is_language(code: &str) -> bool {
    LANGUAGE_SET.contains(code)
}

/// Is `code` a NUTS 2024 (or statistical region 2024) code of level 1 to 3?
pub fn is_region(code: &str) -> bool {
    // Every record names several; a search over integers is a fraction of one over strings.
    region_key(code.as_bytes()).is_some_and(|k| REGION_KEYS.binary_search(&k).is_ok())
}

/// A set of two-letter codes of one case (`first` is `b'A'` or `b'a'`): bit `b` of word `a`
/// holds the code of letters `a`, `b` counted from `first`. Built at compile time from the
/// tables (a code of any other shape there stops the build); records check a language or
/// country code in every text and list.
struct TwoLetterSet {
    first: u8,
    bits: [u32; 26],
}

impl TwoLetterSet {
    const fn of(codes: &[(&str, &str)], first: u8) -> Self {
        let mut bits = [0u32; 26];
        let mut i = 0;
        while i < codes.len() {
            let code = codes[i].0.as_bytes();
            assert!(code.len() == 2);
            bits[(code[0] - first) as usize] |= 1 << (code[1] - first);
            i += 1;
        }
        TwoLetterSet { first, bits }
    }

    fn contains(&self, code: &str) -> bool {
        let [a, b] = code.as_bytes() else {
            return false;
        };
        let (a, b) = (a.wrapping_sub(self.first), b.wrapping_sub(self.first));
        a < 26 && b < 26 && self.bits[a as usize] >> b & 1 == 1
    }
}

static COUNTRY_SET: TwoLetterSet = TwoLetterSet::of(crate::tables::COUNTRIES, b'A');
static LANGUAGE_SET: TwoLetterSet = TwoLetterSet::of(crate::tables::LANGUAGES, b'a');

/// Codes of 1 to 8 bytes, none of them zero, as big-endian integers padded with zeros: ordered
/// as the codes are (a shorter code sorts before its extensions, as zero before any letter or
/// digit).
const fn region_key(code: &[u8]) -> Option<u64> {
    if code.is_empty() || code.len() > 8 {
        return None;
    }
    let mut key = [0u8; 8];
    let mut i = 0;
    while i < code.len() {
        if code[i] == 0 {
            return None;
        }
        key[i] = code[i];
        i += 1;
    }
    Some(u64::from_be_bytes(key))
}

const REGION_COUNT: usize = crate::tables::REGIONS.len();

/// The region table's codes as [`region_key`]s, in the table's (sorted) order; the build
/// stops if the table is not sorted or a code does not fit.
static REGION_KEYS: [u64; REGION_COUNT] = {
    let mut keys = [0u64; REGION_COUNT];
    let mut i = 0;
    while i < REGION_COUNT {
        let Some(key) = region_key(crate::tables::REGIONS[i].0.as_bytes()) else {
            panic!("a region code that is empty, longer than 8 bytes or holds a zero byte");
        };
        assert!(
            i == 0 || keys[i - 1] < key,
            "the region table is not sorted"
        );
        keys[i] = key;
        i += 1;
    }
    keys
};

/// The ISO 3166-1 country a NUTS code lies in (NUTS writes Greece `EL`, ISO `GR`).
pub fn region_country(code: &str) -> Option<&str> {
    let prefix = code.get(..2)?;
    Some(match prefix {
        "EL" => "GR",
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(crate::tables::COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(crate::tables::LANGUAGES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(crate::tables::REGIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn code_lists_know_real_codes() {
        assert!(is_country("SE") && is_country("XK") && !is_country("EL") && !is_country("se"));
        assert!(is_language("sv") && is_language("el") && !is_language("xx"));
        assert!(is_region("SE11") && is_region("ES11") && is_region("EL52") && is_region("NO08"));
        assert!(!is_region("SE99"));
        assert_eq!(region_country("EL52"), Some("GR"));
    }

    #[test]
    fn the_fast_sets_hold_exactly_the_tables_codes() {
        let in_table = |table: &[(&str, &str)], code: &str| table.iter().any(|(c, _)| *c == code);
        // Every two-byte string of ASCII (and of two bytes above it, where UTF-8 allows).
        let bytes: Vec<u8> = (0u8..=127).chain([0xc3, 0xff]).collect();
        for a in &bytes {
            for b in &bytes {
                let Ok(code) = std::str::from_utf8(&[*a, *b]).map(str::to_owned) else {
                    continue;
                };
                assert_eq!(
                    is_country(&code),
                    in_table(crate::tables::COUNTRIES, &code),
                    "{code:?}"
                );
                assert_eq!(
                    is_language(&code),
                    in_table(crate::tables::LANGUAGES, &code),
                    "{code:?}"
                );
            }
        }
        for (code, _, _) in crate::tables::REGIONS {
            assert!(is_region(code), "{code}");
            for near in [
                format!("{code}0"),
                format!("{code}\0"),
                code.to_lowercase(),
                code[..code.len() - 1].to_owned() + "Z",
            ] {
                let known = crate::tables::REGIONS.iter().any(|(c, _, _)| *c == near);
                assert_eq!(is_region(&near), known, "{near:?}");
            }
        }
        for odd in ["", "S", "SE", "ABCDEFGHI", "SE110000", "é", "SE\u{0}11"] {
            assert!(!is_region(odd), "{odd:?}");
        }
        assert!(!is_country("") && !is_country("SWE") && !is_language("e"));
    }
}
