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
    crate::tables::COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .is_ok()
}

/// Is `code` an ISO 639-1 language code?
pub fn is_language(code: &str) -> bool {
    crate::tables::LANGUAGES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .is_ok()
}

/// Is `code` a NUTS 2024 (or statistical region 2024) code of level 1 to 3?
pub fn is_region(code: &str) -> bool {
    crate::tables::REGIONS
        .binary_search_by(|(c, _, _)| (*c).cmp(code))
        .is_ok()
}

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
}
