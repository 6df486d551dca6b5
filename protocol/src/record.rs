//! The record layout users write (RECORDS.md, a public contract): hub profiles, service
//! offerings and digital-health practices, with their validation.
//!
//! Parsing goes JSON/TOML → `serde_json::Value` → typed struct, so every refusal can name the
//! field path (`title.en`, `trl.min`, `regions[2]`), the offending value and the valid choices.
//! The same `validate` runs before a hub signs a record and again when a node receives one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::HubId;
use crate::vocab::{self, Vocabulary};

/// The record layout version this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest canonical record, in bytes: a record is one value in its hub's document.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;
/// Longest description per language, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// Longest title, name or other single-line text, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Most entries in any list field.
pub const MAX_LIST_ITEMS: usize = 200;

/// Text for people in several languages: ISO 639-1 code → text.
pub type LangMap = BTreeMap<String, String>;

/// A refusal: which field, what value, and what would have been valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{detail}", field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct RecordError {
    /// Path of the offending field (`title.en`, `regions[1]`), when one is to blame.
    pub field: Option<String>,
    /// What was wrong and, for closed lists, the valid choices.
    pub detail: String,
}

impl RecordError {
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        RecordError {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    fn syntax(detail: impl Into<String>) -> Self {
        RecordError {
            field: None,
            detail: detail.into(),
        }
    }
}

/// Shown in messages: a value cut to a readable length.
fn shown(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        format!("`{value}`")
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("`{cut}…` ({} characters)", value.chars().count())
    }
}

/// The three kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Profile,
    Service,
    Practice,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [
        RecordKind::Profile,
        RecordKind::Service,
        RecordKind::Practice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Profile => "profile",
            RecordKind::Service => "service",
            RecordKind::Practice => "practice",
        }
    }

    pub fn parse(s: &str) -> Result<Self, RecordError> {
        match s {
            "profile" => Ok(RecordKind::Profile),
            "service" => Ok(RecordKind::Service),
            "practice" => Ok(RecordKind::Practice),
            other => Err(RecordError::field(
                "kind",
                format!(
                    "unknown kind {}; valid: profile, service, practice",
                    shown(other)
                ),
            )),
        }
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields the node adds to every record (the envelope); accepted on input so that an export
/// can be imported again, and checked like any other field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    /// The record's slug within its publisher; generated when absent. Profiles are `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The publishing hub's `did:key`; set by the node that signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// RFC 3339 time of first publication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    /// RFC 3339 time of the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// RFC 3339 time the publisher last confirmed the record is still true (stale otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_confirmed: Option<String>,
}

const META_FIELDS: [&str; 6] = [
    "schema",
    "id",
    "publisher",
    "issued",
    "modified",
    "last_confirmed",
];

/// A vocabulary term, either a bare slug or `{term, level}` with an engagement level 1–5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TermRef {
    Slug(String),
    Leveled { term: String, level: u8 },
}

impl TermRef {
    pub fn slug(&self) -> &str {
        match self {
            TermRef::Slug(s) => s,
            TermRef::Leveled { term, .. } => term,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontDesk {
    /// A role mailbox (`info@…`), not a person's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub name: String,
    pub title: LangMap,
    pub hub_type: String,
    pub country: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "LangMap::is_empty")]
    pub description: LangMap,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub technologies: Vec<TermRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors: Vec<TermRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_desk: Option<FrontDesk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrlRange {
    pub min: u8,
    pub max: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub title: LangMap,
    pub description: LangMap,
    pub category: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub technologies: Vec<TermRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors: Vec<TermRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trl: Option<TrlRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub area_served: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_border: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Practice {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub title: LangMap,
    pub description: LangMap,
    pub practice_type: String,
    pub maturity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trl: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_to_twinning: Option<bool>,
}

const PROFILE_FIELDS: &[&str] = &[
    "name",
    "title",
    "hub_type",
    "country",
    "regions",
    "website",
    "description",
    "languages",
    "technologies",
    "sectors",
    "front_desk",
    "partners",
];
const SERVICE_FIELDS: &[&str] = &[
    "title",
    "description",
    "category",
    "technologies",
    "sectors",
    "audience",
    "trl",
    "area_served",
    "cross_border",
    "languages",
    "delivery",
    "cost",
    "contact",
    "landing_page",
    "valid_from",
    "valid_until",
];
const PRACTICE_FIELDS: &[&str] = &[
    "title",
    "description",
    "practice_type",
    "maturity",
    "scale",
    "trl",
    "owner",
    "countries",
    "languages",
    "evidence",
    "open_to_twinning",
];

/// One catalogue record of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Profile(Profile),
    Service(Service),
    Practice(Practice),
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `kind` plus the kind's own fields, keys sorted: the canonical JSON every node stores.
        let body = match self {
            Record::Profile(p) => serde_json::to_value(p),
            Record::Service(s) => serde_json::to_value(s),
            Record::Practice(p) => serde_json::to_value(p),
        }
        .map_err(serde::ser::Error::custom)?;
        let mut map = serde_json::Map::new();
        map.insert("kind".into(), Value::String(self.kind().as_str().into()));
        if let Value::Object(fields) = body {
            map.extend(fields);
        }
        Value::Object(map).serialize(serializer)
    }
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Profile(_) => RecordKind::Profile,
            Record::Service(_) => RecordKind::Service,
            Record::Practice(_) => RecordKind::Practice,
        }
    }

    pub fn meta(&self) -> &RecordMeta {
        match self {
            Record::Profile(p) => &p.meta,
            Record::Service(s) => &s.meta,
            Record::Practice(p) => &p.meta,
        }
    }

    pub fn meta_mut(&mut self) -> &mut RecordMeta {
        match self {
            Record::Profile(p) => &mut p.meta,
            Record::Service(s) => &mut s.meta,
            Record::Practice(p) => &mut p.meta,
        }
    }

    /// The title in `lang`, else English, else any language.
    pub fn title(&self, lang: Option<&str>) -> &str {
        let title = match self {
            Record::Profile(p) => &p.title,
            Record::Service(s) => &s.title,
            Record::Practice(p) => &p.title,
        };
        pick_language(title, lang)
    }

    /// Countries the record concerns: a profile's country, the countries of a service's area
    /// served (regions count for their country), a practice's countries.
    pub fn countries(&self) -> Vec<String> {
        let mut out: Vec<String> = match self {
            Record::Profile(p) => vec![p.country.clone()],
            Record::Service(s) => s
                .area_served
                .iter()
                .filter_map(|a| vocab::region_country(a).map(str::to_owned))
                .collect(),
            Record::Practice(p) => p.countries.clone(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// The EDIH category of a service.
    pub fn category(&self) -> Option<&str> {
        match self {
            Record::Service(s) => Some(&s.category),
            _ => None,
        }
    }

    /// Canonical JSON: the bytes stored in the hub's document.
    pub fn to_canonical_json(&self) -> String {
        // Serialising plain structs and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse a record from JSON bytes, refusing anything invalid.
    pub fn from_json(bytes: &[u8]) -> Result<Record, RecordError> {
        Record::from_json_with(
            JsonInput::Bytes(bytes),
            Known {
                publisher: None,
                input_len: Some(bytes.len()),
            },
        )
    }

    fn from_json_with(input: JsonInput<'_>, known: Known<'_>) -> Result<Record, RecordError> {
        // Most input is valid: parse it straight into the typed record. Anything that path
        // does not take (including every invalid input) goes the `Value` way, which names
        // the offending field; both accept exactly the same records (see `AnyRecord`).
        let starts_as_object =
            input.bytes().iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if starts_as_object {
            if let Some(record) = input
                .parse::<AnyRecord>()
                .ok()
                .and_then(AnyRecord::into_record)
            {
                record.validate_with(known)?;
                return Ok(record);
            }
        }
        let value: Value = input
            .parse()
            .map_err(|e| RecordError::syntax(format!("not valid JSON: {e}")))?;
        Record::from_value_with(value, known)
    }

    /// [`Record::from_json`] for a record found in `owner_did`'s document: exactly the same
    /// checks and refusals, but a `publisher` equal to `owner_did` (a did the caller built from
    /// a valid key) is not decoded again, and the text, a string of the document, is not
    /// checked for UTF-8 again. This is the receive path of every signed change.
    pub fn from_json_published_by(json: &str, owner_did: &str) -> Result<Record, RecordError> {
        Record::from_json_with(
            JsonInput::Text(json),
            Known {
                publisher: Some(owner_did),
                input_len: Some(json.len()),
            },
        )
    }

    /// Parse a record from TOML text with the same keys as the JSON layout.
    pub fn from_toml(text: &str) -> Result<Record, RecordError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| RecordError::syntax(format!("not valid TOML: {e}")))?;
        Record::from_value(toml_to_json(toml::Value::Table(table)))
    }

    /// Parse and validate a record from a JSON value.
    pub fn from_value(value: Value) -> Result<Record, RecordError> {
        Record::from_value_with(value, Known::default())
    }

    fn from_value_with(value: Value, known: Known<'_>) -> Result<Record, RecordError> {
        let Value::Object(map) = &value else {
            return Err(RecordError::syntax("a record must be a JSON object"));
        };
        let kind = match map.get("kind") {
            Some(Value::String(k)) => RecordKind::parse(k)?,
            Some(other) => {
                return Err(RecordError::field(
                    "kind",
                    format!("must be a string, got {other}"),
                ))
            }
            None => {
                return Err(RecordError::field(
                    "kind",
                    "missing; valid: profile, service, practice",
                ))
            }
        };
        let fields = match kind {
            RecordKind::Profile => PROFILE_FIELDS,
            RecordKind::Service => SERVICE_FIELDS,
            RecordKind::Practice => PRACTICE_FIELDS,
        };
        for key in map.keys() {
            if key != "kind"
                && !fields.contains(&key.as_str())
                && !META_FIELDS.contains(&key.as_str())
            {
                return Err(RecordError::field(
                    key.clone(),
                    format!(
                        "unknown field for a {kind}; valid fields: kind, {}, {}",
                        fields.join(", "),
                        META_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let record = match kind {
            RecordKind::Profile => Record::Profile(typed(value)?),
            RecordKind::Service => Record::Service(typed(value)?),
            RecordKind::Practice => Record::Practice(typed(value)?),
        };
        record.validate_with(known)?;
        Ok(record)
    }

    /// Check every field against the layout's rules. Runs before signing and on receipt.
    pub fn validate(&self) -> Result<(), RecordError> {
        self.validate_with(Known::default())
    }

    fn validate_with(&self, known: Known<'_>) -> Result<(), RecordError> {
        let meta = self.meta();
        if let Some(schema) = meta.schema {
            if schema != SCHEMA_VERSION {
                return Err(RecordError::field(
                    "schema",
                    format!(
                        "unsupported layout version {schema}; this node reads {SCHEMA_VERSION}"
                    ),
                ));
            }
        }
        if let Some(id) = &meta.id {
            if self.kind() == RecordKind::Profile {
                if id != PROFILE_SLUG {
                    return Err(RecordError::field(
                        "id",
                        format!(
                            "a hub has one profile, its id is `{PROFILE_SLUG}`, not {}",
                            shown(id)
                        ),
                    ));
                }
            } else if id == PROFILE_SLUG {
                return Err(RecordError::field(
                    "id",
                    format!(
                        "`{PROFILE_SLUG}` is reserved for the hub's profile; choose another id"
                    ),
                ));
            } else {
                check_slug("id", id)?;
            }
        }
        if let Some(p) = &meta.publisher {
            if known.publisher != Some(p.as_str()) {
                HubId::from_did(p).map_err(|e| RecordError::field("publisher", e.to_string()))?;
            }
        }
        for (field, v) in [
            ("issued", &meta.issued),
            ("modified", &meta.modified),
            ("last_confirmed", &meta.last_confirmed),
        ] {
            if let Some(v) = v {
                parse_timestamp(v).map_err(|d| RecordError::field(field, d))?;
            }
        }
        match self {
            Record::Profile(p) => p.validate(),
            Record::Service(s) => s.validate(),
            Record::Practice(p) => p.validate(),
        }?;
        // Canonical JSON is never longer than JSON that parses to the same record (it drops
        // whitespace, nulls, unknown nested keys and duplicates, and escapes only what JSON
        // input must escape too), so input within the limit needs no re-serialisation.
        if known.input_len.is_some_and(|n| n <= MAX_RECORD_BYTES) {
            return Ok(());
        }
        let size = self.to_canonical_json().len();
        if size > MAX_RECORD_BYTES {
            return Err(RecordError::syntax(format!(
                "record is {size} bytes, larger than the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        Ok(())
    }
}

/// JSON to parse: bytes (checked for UTF-8 as they are read) or text already known to be.
#[derive(Clone, Copy)]
enum JsonInput<'a> {
    Bytes(&'a [u8]),
    Text(&'a str),
}

impl<'a> JsonInput<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            JsonInput::Bytes(b) => b,
            JsonInput::Text(t) => t.as_bytes(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        match self {
            JsonInput::Bytes(b) => serde_json::from_slice(b),
            JsonInput::Text(t) => serde_json::from_str(t),
        }
    }
}

/// Every key a record of any kind may have, each remembering whether it was present (a key
/// with a `null` value counts as present: `Some(None)`), to parse JSON straight into a typed
/// record. [`AnyRecord::into_record`] gives up (and the caller takes the `Value` path) on
/// anything the `Value` path would refuse before validation or read differently: a key outside
/// the kind's fields (unknown keys and duplicates already fail to parse here), a missing
/// required field, a value of the wrong type. Each field has the type of the typed record's
/// field, so both paths read the same values; `trl`, typed differently per kind, goes through a
/// `Value` exactly as on the `Value` path. The input must be a JSON object (checked by the
/// caller: serde would also read a struct from an array).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyRecord {
    kind: String,
    #[serde(default, deserialize_with = "present")]
    schema: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    publisher: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    issued: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    modified: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    last_confirmed: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    title: Option<LangMap>,
    #[serde(default, deserialize_with = "present")]
    hub_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    country: Option<String>,
    #[serde(default, deserialize_with = "present")]
    regions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    website: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<LangMap>,
    #[serde(default, deserialize_with = "present")]
    languages: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    technologies: Option<Vec<TermRef>>,
    #[serde(default, deserialize_with = "present")]
    sectors: Option<Vec<TermRef>>,
    #[serde(default, deserialize_with = "present")]
    front_desk: Option<Option<FrontDesk>>,
    #[serde(default, deserialize_with = "present")]
    partners: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    category: Option<String>,
    #[serde(default, deserialize_with = "present")]
    audience: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    trl: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    area_served: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    cross_border: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    delivery: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    cost: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    contact: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    landing_page: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    valid_from: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    valid_until: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    practice_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    maturity: Option<String>,
    #[serde(default, deserialize_with = "present")]
    scale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    countries: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    evidence: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    open_to_twinning: Option<Option<bool>>,
}

/// A key that is there, whatever its value (`null` included).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl AnyRecord {
    /// The keys present besides `kind` and the envelope's.
    fn field_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |present: bool, key: &'static str| {
            if present {
                keys.push(key);
            }
        };
        note(self.name.is_some(), "name");
        note(self.title.is_some(), "title");
        note(self.hub_type.is_some(), "hub_type");
        note(self.country.is_some(), "country");
        note(self.regions.is_some(), "regions");
        note(self.website.is_some(), "website");
        note(self.description.is_some(), "description");
        note(self.languages.is_some(), "languages");
        note(self.technologies.is_some(), "technologies");
        note(self.sectors.is_some(), "sectors");
        note(self.front_desk.is_some(), "front_desk");
        note(self.partners.is_some(), "partners");
        note(self.category.is_some(), "category");
        note(self.audience.is_some(), "audience");
        note(self.trl.is_some(), "trl");
        note(self.area_served.is_some(), "area_served");
        note(self.cross_border.is_some(), "cross_border");
        note(self.delivery.is_some(), "delivery");
        note(self.cost.is_some(), "cost");
        note(self.contact.is_some(), "contact");
        note(self.landing_page.is_some(), "landing_page");
        note(self.valid_from.is_some(), "valid_from");
        note(self.valid_until.is_some(), "valid_until");
        note(self.practice_type.is_some(), "practice_type");
        note(self.maturity.is_some(), "maturity");
        note(self.scale.is_some(), "scale");
        note(self.owner.is_some(), "owner");
        note(self.countries.is_some(), "countries");
        note(self.evidence.is_some(), "evidence");
        note(self.open_to_twinning.is_some(), "open_to_twinning");
        keys
    }

    /// The typed record, or `None` where the `Value` path must decide (see the type's doc).
    fn into_record(self) -> Option<Record> {
        let kind = RecordKind::parse(&self.kind).ok()?;
        let fields = match kind {
            RecordKind::Profile => PROFILE_FIELDS,
            RecordKind::Service => SERVICE_FIELDS,
            RecordKind::Practice => PRACTICE_FIELDS,
        };
        if !self.field_keys().iter().all(|k| fields.contains(k)) {
            return None;
        }
        let meta = RecordMeta {
            schema: self.schema.flatten(),
            id: self.id.flatten(),
            publisher: self.publisher.flatten(),
            issued: self.issued.flatten(),
            modified: self.modified.flatten(),
            last_confirmed: self.last_confirmed.flatten(),
        };
        Some(match kind {
            RecordKind::Profile => Record::Profile(Profile {
                meta,
                name: self.name?,
                title: self.title?,
                hub_type: self.hub_type?,
                country: self.country?,
                regions: self.regions.unwrap_or_default(),
                website: self.website.flatten(),
                description: self.description.unwrap_or_default(),
                languages: self.languages.unwrap_or_default(),
                technologies: self.technologies.unwrap_or_default(),
                sectors: self.sectors.unwrap_or_default(),
                front_desk: self.front_desk.flatten(),
                partners: self.partners.unwrap_or_default(),
            }),
            RecordKind::Service => Record::Service(Service {
                meta,
                title: self.title?,
                description: self.description?,
                category: self.category?,
                technologies: self.technologies.unwrap_or_default(),
                sectors: self.sectors.unwrap_or_default(),
                audience: self.audience.unwrap_or_default(),
                trl: match self.trl {
                    Some(v) => Option::<TrlRange>::deserialize(v).ok()?,
                    None => None,
                },
                area_served: self.area_served.unwrap_or_default(),
                cross_border: self.cross_border.flatten(),
                languages: self.languages.unwrap_or_default(),
                delivery: self.delivery.flatten(),
                cost: self.cost.flatten(),
                contact: self.contact.flatten(),
                landing_page: self.landing_page.flatten(),
                valid_from: self.valid_from.flatten(),
                valid_until: self.valid_until.flatten(),
            }),
            RecordKind::Practice => Record::Practice(Practice {
                meta,
                title: self.title?,
                description: self.description?,
                practice_type: self.practice_type?,
                maturity: self.maturity?,
                scale: self.scale.flatten(),
                trl: match self.trl {
                    Some(v) => Option::<u8>::deserialize(v).ok()?,
                    None => None,
                },
                owner: self.owner.flatten(),
                countries: self.countries.unwrap_or_default(),
                languages: self.languages.unwrap_or_default(),
                evidence: self.evidence.unwrap_or_default(),
                open_to_twinning: self.open_to_twinning.flatten(),
            }),
        })
    }
}

/// What the caller already knows about a record being validated, to skip repeated work.
#[derive(Debug, Default, Clone, Copy)]
struct Known<'a> {
    /// A publisher did built from a valid key: an equal `publisher` field needs no decoding.
    publisher: Option<&'a str>,
    /// Length of the JSON text the record was parsed from.
    input_len: Option<usize>,
}

/// The slug of a hub's one profile record.
pub const PROFILE_SLUG: &str = "profile";

impl Profile {
    fn validate(&self) -> Result<(), RecordError> {
        check_line("name", &self.name, 120)?;
        check_langmap("title", &self.title, MAX_TITLE_CHARS, true)?;
        check_vocab("hub_type", &self.hub_type, &vocab::HUB_TYPES)?;
        check_country("country", &self.country)?;
        check_list("regions", &self.regions, check_region)?;
        if let Some(w) = &self.website {
            check_url("website", w)?;
        }
        check_langmap(
            "description",
            &self.description,
            MAX_DESCRIPTION_CHARS,
            false,
        )?;
        check_list("languages", &self.languages, check_language)?;
        check_terms("technologies", &self.technologies, &vocab::TECHNOLOGIES)?;
        check_terms("sectors", &self.sectors, &vocab::SECTORS)?;
        if let Some(fd) = &self.front_desk {
            if let Some(e) = &fd.email {
                check_email("front_desk.email", e)?;
            }
            if let Some(p) = &fd.phone {
                check_phone("front_desk.phone", p)?;
            }
            check_list("front_desk.languages", &fd.languages, |f, l| {
                check_language(f, l)
            })?;
            if let Some(h) = &fd.hours {
                check_line("front_desk.hours", h, 200)?;
            }
        }
        check_list("partners", &self.partners, |f, p| {
            check_line(f, p, MAX_TITLE_CHARS)
        })
    }
}

impl Service {
    fn validate(&self) -> Result<(), RecordError> {
        check_langmap("title", &self.title, MAX_TITLE_CHARS, true)?;
        check_langmap(
            "description",
            &self.description,
            MAX_DESCRIPTION_CHARS,
            true,
        )?;
        check_vocab("category", &self.category, &vocab::CATEGORIES)?;
        check_terms("technologies", &self.technologies, &vocab::TECHNOLOGIES)?;
        check_terms("sectors", &self.sectors, &vocab::SECTORS)?;
        check_list("audience", &self.audience, |f, a| {
            check_vocab(f, a, &vocab::AUDIENCES)
        })?;
        if let Some(trl) = self.trl {
            check_trl("trl.min", trl.min)?;
            check_trl("trl.max", trl.max)?;
            if trl.min > trl.max {
                return Err(RecordError::field(
                    "trl",
                    format!("min {} is greater than max {}", trl.min, trl.max),
                ));
            }
        }
        check_list("area_served", &self.area_served, |f, a| {
            if a.len() == 2 {
                check_country(f, a)
            } else {
                check_region(f, a)
            }
        })?;
        check_list("languages", &self.languages, check_language)?;
        if let Some(d) = &self.delivery {
            check_vocab("delivery", d, &vocab::DELIVERY)?;
        }
        if let Some(c) = &self.cost {
            check_vocab("cost", c, &vocab::COST)?;
        }
        if let Some(c) = &self.contact {
            check_email("contact", c)?;
        }
        if let Some(l) = &self.landing_page {
            check_url("landing_page", l)?;
        }
        let from = self
            .valid_from
            .as_deref()
            .map(|d| parse_date(d).map_err(|e| RecordError::field("valid_from", e)))
            .transpose()?;
        let until = self
            .valid_until
            .as_deref()
            .map(|d| parse_date(d).map_err(|e| RecordError::field("valid_until", e)))
            .transpose()?;
        if let (Some(from), Some(until)) = (from, until) {
            if from > until {
                return Err(RecordError::field(
                    "valid_until",
                    format!("{until} is before valid_from {from}"),
                ));
            }
        }
        Ok(())
    }
}

impl Practice {
    fn validate(&self) -> Result<(), RecordError> {
        check_langmap("title", &self.title, MAX_TITLE_CHARS, true)?;
        check_langmap(
            "description",
            &self.description,
            MAX_DESCRIPTION_CHARS,
            true,
        )?;
        check_vocab("practice_type", &self.practice_type, &vocab::PRACTICE_TYPES)?;
        check_vocab("maturity", &self.maturity, &vocab::MATURITY)?;
        if let Some(s) = &self.scale {
            check_vocab("scale", s, &vocab::SCALE)?;
        }
        if let Some(t) = self.trl {
            check_trl("trl", t)?;
        }
        if let Some(o) = &self.owner {
            check_line("owner", o, MAX_TITLE_CHARS)?;
        }
        check_list("countries", &self.countries, check_country)?;
        check_list("languages", &self.languages, check_language)?;
        check_list("evidence", &self.evidence, |f, e| check_line(f, e, 1000))
    }
}

/// Pick the text in `lang`, else English, else the first language.
pub fn pick_language<'a>(map: &'a LangMap, lang: Option<&str>) -> &'a str {
    lang.and_then(|l| map.get(l))
        .or_else(|| map.get("en"))
        .or_else(|| map.values().next())
        .map(String::as_str)
        .unwrap_or("")
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, RecordError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            // serde names a missing required field in its message: "missing field `title`".
            match inner.split('`').nth(1) {
                Some(field) if inner.starts_with("missing field") => {
                    RecordError::field(field, "required field is missing")
                }
                _ => RecordError::syntax(inner),
            }
        } else {
            RecordError::field(path, inner)
        }
    })
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        // An unquoted TOML date (`valid_from = 2025-01-01`) is the same as the string.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn check_line(field: &str, value: &str, max: usize) -> Result<(), RecordError> {
    if value.trim().is_empty() {
        return Err(RecordError::field(field, "must not be empty"));
    }
    // One pass over the text; ASCII (most text) byte by byte.
    let (n, control) = if value.is_ascii() {
        let control = value
            .bytes()
            .any(|b| (b < 0x20 && !matches!(b, b'\n' | b'\t' | b'\r')) || b == 0x7f);
        (value.len(), control)
    } else {
        value.chars().fold((0, false), |(n, control), c| {
            let bad = c.is_control() && !matches!(c, '\n' | '\t' | '\r');
            (n + 1, control || bad)
        })
    };
    if n > max {
        return Err(RecordError::field(
            field,
            format!(
                "{} is too long: {n} characters, at most {max}",
                shown(value)
            ),
        ));
    }
    if control {
        return Err(RecordError::field(field, "contains control characters"));
    }
    Ok(())
}

fn check_langmap(
    field: &str,
    map: &LangMap,
    max: usize,
    required: bool,
) -> Result<(), RecordError> {
    if required && map.is_empty() {
        return Err(RecordError::field(
            field,
            "needs at least one language entry, e.g. {\"en\": \"…\"}",
        ));
    }
    for (lang, text) in map {
        // The checks are pure: run them again with the full field name only to report.
        if check_language(field, lang).is_err() || check_line(field, text, max).is_err() {
            check_language(&format!("{field}.{lang}"), lang)?;
            check_line(&format!("{field}.{lang}"), text, max)?;
        }
    }
    Ok(())
}

fn check_list<F>(field: &str, items: &[String], check: F) -> Result<(), RecordError>
where
    F: Fn(&str, &str) -> Result<(), RecordError>,
{
    if items.len() > MAX_LIST_ITEMS {
        return Err(RecordError::field(
            field,
            format!("has {} entries, at most {MAX_LIST_ITEMS}", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        // `check` is pure: run it again with the full field name only to report.
        if check(field, item).is_err() {
            check(&format!("{field}[{i}]"), item)?;
        }
    }
    Ok(())
}

fn check_vocab(field: &str, value: &str, vocab: &Vocabulary) -> Result<(), RecordError> {
    if vocab.contains(value) {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!(
                "unknown {} {}; valid: {}",
                vocab.name,
                shown(value),
                vocab.choices()
            ),
        ))
    }
}

fn check_terms(field: &str, terms: &[TermRef], vocab: &Vocabulary) -> Result<(), RecordError> {
    if terms.len() > MAX_LIST_ITEMS {
        return Err(RecordError::field(
            field,
            format!("at most {MAX_LIST_ITEMS} entries"),
        ));
    }
    for (i, t) in terms.iter().enumerate() {
        check_vocab(&format!("{field}[{i}]"), t.slug(), vocab)?;
        if let TermRef::Leveled { level, .. } = t {
            if !(1..=5).contains(level) {
                return Err(RecordError::field(
                    format!("{field}[{i}].level"),
                    format!("engagement level {level} is out of range; valid: 1 to 5"),
                ));
            }
        }
    }
    Ok(())
}

/// Check `code` against a code list, naming the list and examples of valid codes on refusal.
fn check_code(
    field: &str,
    code: &str,
    known: fn(&str) -> bool,
    what: &str,
    valid: &str,
) -> Result<(), RecordError> {
    if known(code) {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!("unknown {what} {}; valid: {valid}", shown(code)),
        ))
    }
}

fn check_country(field: &str, code: &str) -> Result<(), RecordError> {
    let what = if code == "EL" {
        "country (Greece is GR in ISO 3166-1; EL is its NUTS prefix)"
    } else {
        "country"
    };
    check_code(
        field,
        code,
        vocab::is_country,
        what,
        "ISO 3166-1 alpha-2 codes in capitals (SE, ES, GR …) or XK",
    )
}

fn check_region(field: &str, code: &str) -> Result<(), RecordError> {
    check_code(
        field,
        code,
        vocab::is_region,
        "NUTS 2024 region",
        "NUTS 2024 or statistical-region codes of level 1-3 (SE11, ES11, EL52 …)",
    )
}

fn check_language(field: &str, code: &str) -> Result<(), RecordError> {
    check_code(
        field,
        code,
        vocab::is_language,
        "language",
        "ISO 639-1 codes in lower case (en, sv, es, el …)",
    )
}

fn check_trl(field: &str, trl: u8) -> Result<(), RecordError> {
    if (1..=9).contains(&trl) {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!("TRL {trl} is out of range; valid: 1 to 9"),
        ))
    }
}

pub(crate) fn check_slug(field: &str, slug: &str) -> Result<(), RecordError> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug.as_bytes()[0].is_ascii_alphanumeric()
        && slug.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!(
                "{} is not a valid id; valid: 1-64 characters a-z 0-9 - _ . starting with a letter or digit",
                shown(slug)
            ),
        ))
    }
}

fn check_url(field: &str, value: &str) -> Result<(), RecordError> {
    if value.len() > 2048 {
        return Err(RecordError::field(field, "URL longer than 2048 characters"));
    }
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
            Ok(())
        }
        Ok(_) => Err(RecordError::field(
            field,
            format!("{} is not an absolute http(s) URL", shown(value)),
        )),
        Err(e) => Err(RecordError::field(
            field,
            format!("{} is not a valid URL: {e}", shown(value)),
        )),
    }
}

fn check_email(field: &str, value: &str) -> Result<(), RecordError> {
    let valid = value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!("{} is not an email address (name@domain.tld)", shown(value)),
        ))
    }
}

fn check_phone(field: &str, value: &str) -> Result<(), RecordError> {
    let valid = value.len() <= 40
        && value.chars().filter(char::is_ascii_digit).count() >= 5
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()./".contains(c));
    if valid {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!(
                "{} is not a phone number (digits, spaces, + - ( ) . /)",
                shown(value)
            ),
        ))
    }
}

fn parse_date(value: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format)
        .map_err(|_| format!("{} is not an ISO date (YYYY-MM-DD)", shown(value)))
}

/// Parse an RFC 3339 timestamp as the envelope fields carry them.
pub fn parse_timestamp(value: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            format!(
                "{} is not an RFC 3339 timestamp (2025-05-01T12:00:00Z)",
                shown(value)
            )
        },
    )
}

/// Format a unix time in milliseconds as RFC 3339 (UTC, whole seconds).
pub fn format_timestamp(unix_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Value {
        serde_json::json!({
            "kind": "service", "id": "ai-testbed",
            "title": {"en": "AI testbed", "sv": "AI-testbädd"},
            "description": {"en": "Test your AI product before you invest."},
            "category": "test-before-invest",
            "technologies": ["artificial-intelligence", {"term": "big-data", "level": 4}],
            "trl": {"min": 3, "max": 7}, "area_served": ["SE", "SE11", "EL52"],
            "languages": ["sv", "en"], "contact": "testbed@hds.example.se",
            "landing_page": "https://hds.example.se/ai", "valid_from": "2025-01-01"
        })
    }

    fn refusal(mut v: Value, path: &[&str], bad: Value) -> RecordError {
        let mut target = &mut v;
        for p in &path[..path.len() - 1] {
            target = &mut target[*p];
        }
        target[path[path.len() - 1]] = bad;
        Record::from_value(v).expect_err("must be refused")
    }

    #[test]
    fn a_valid_service_round_trips_through_canonical_json() {
        let r = Record::from_value(service()).expect("valid");
        let again = Record::from_json(r.to_canonical_json().as_bytes()).expect("valid");
        assert_eq!(r, again);
        assert_eq!(r.countries(), vec!["GR".to_string(), "SE".to_string()]);
        assert!(r.to_canonical_json().contains(r#""kind":"service""#));
    }

    #[test]
    fn each_bad_field_is_named_with_value_and_choices() {
        let e = refusal(service(), &["category"], "consulting".into());
        assert_eq!(e.field.as_deref(), Some("category"));
        assert!(e.detail.contains("consulting") && e.detail.contains("test-before-invest"));

        let e = refusal(service(), &["area_served"], serde_json::json!(["SE99"]));
        assert_eq!(e.field.as_deref(), Some("area_served[0]"));
        assert!(e.detail.contains("SE99"));

        let e = refusal(
            service(),
            &["languages"],
            serde_json::json!(["sv", "swedish"]),
        );
        assert_eq!(e.field.as_deref(), Some("languages[1]"));

        let e = refusal(service(), &["trl"], serde_json::json!({"min": 7, "max": 3}));
        assert_eq!(e.field.as_deref(), Some("trl"));

        let e = refusal(service(), &["trl", "max"], 10.into());
        assert_eq!(e.field.as_deref(), Some("trl.max"));

        let e = refusal(
            service(),
            &["technologies"],
            serde_json::json!([{"term": "ai", "level": 2}]),
        );
        assert_eq!(e.field.as_deref(), Some("technologies[0]"));
        assert!(e.detail.contains("artificial-intelligence"));

        let e = refusal(
            service(),
            &["description", "en"],
            "x".repeat(1_000_000).into(),
        );
        assert_eq!(e.field.as_deref(), Some("description.en"));
        assert!(e.detail.contains("too long"));

        let e = refusal(service(), &["contact"], "not-an-email".into());
        assert_eq!(e.field.as_deref(), Some("contact"));

        let e = refusal(service(), &["landing_page"], "ftp://x.example".into());
        assert_eq!(e.field.as_deref(), Some("landing_page"));

        let e = refusal(service(), &["valid_from"], "01/02/2025".into());
        assert_eq!(e.field.as_deref(), Some("valid_from"));

        let e = refusal(service(), &["colour"], "blue".into());
        assert_eq!(e.field.as_deref(), Some("colour"));

        let e = refusal(service(), &["trl", "min"], "three".into());
        assert_eq!(e.field.as_deref(), Some("trl.min"));
    }

    #[test]
    fn missing_title_and_bad_country_are_named() {
        let mut v = service();
        v.as_object_mut().expect("object").remove("title");
        let e = Record::from_value(v).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("title"));

        let profile = serde_json::json!({"kind": "profile", "name": "HDS",
            "title": {"en": "Health Data Sweden"}, "hub_type": "edih", "country": "EL"});
        let e = Record::from_value(profile).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("country"));
        assert!(e.detail.contains("GR"));
    }

    #[test]
    fn canonical_json_is_never_longer_than_its_input() {
        // The size check on the receive path relies on this (see `validate_with`).
        let inputs = [
            service().to_string(),
            serde_json::to_string_pretty(&service()).expect("json"),
            r#"{"kind":"service","id":"a","title":{"en":"\u00e9t\u00e9 \ud83d\ude00 \/ \b\f\n\r\t \u001f \" \\"},
               "description":{"en":"x"},"category":"test-before-invest","trl":null,
               "technologies":[{"term":"big-data","level":4,"extra":1}],"cost":null,
               "title":{"en":"dup"}, "valid_from": "2025-01-01"}"#
                .to_owned(),
            r#"{"kind":"profile","name":"N","title":{"en":"T"},"hub_type":"edih","country":"SE",
               "description":{},"front_desk":{"languages":[],"email":null}}"#
                .to_owned(),
        ];
        for input in inputs {
            let r = Record::from_json(input.as_bytes()).expect("valid");
            assert!(r.to_canonical_json().len() <= input.len(), "{input}");
            let known = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
            assert_eq!(
                Record::from_json_published_by(&input, known).expect("valid"),
                r
            );
        }
    }

    #[test]
    fn a_record_over_the_size_limit_is_refused_on_receipt() {
        let mut v = service();
        v["description"]["en"] = "d".repeat(MAX_DESCRIPTION_CHARS).into();
        for lang in [
            "sv", "de", "fr", "es", "it", "nl", "pl", "fi", "da", "el", "pt", "cs", "hu",
        ] {
            v["description"][lang] = "d".repeat(MAX_DESCRIPTION_CHARS).into();
        }
        let json = v.to_string();
        assert!(json.len() > MAX_RECORD_BYTES);
        let e = Record::from_json(json.as_bytes()).expect_err("too large");
        assert!(e.detail.contains("larger than"), "{e}");
        // Padding alone does not make a small record too large.
        let padded = format!("{}{}", service(), " ".repeat(MAX_RECORD_BYTES));
        assert!(Record::from_json(padded.as_bytes()).is_ok());
    }

    /// The direct parse and the `Value` parse accept and refuse the same inputs, and read
    /// them the same way.
    #[test]
    fn direct_and_value_parsing_agree() {
        let practice = serde_json::json!({"kind":"practice","id":"tm","title":{"en":"T"},
            "description":{"en":"D"},"practice_type":"complex-solution","maturity":"deployed",
            "trl": 5, "countries": ["SE"], "open_to_twinning": true, "scale": null});
        let profile = serde_json::json!({"kind": "profile", "name": "HDS",
            "title": {"en": "Health Data Sweden"}, "hub_type": "edih", "country": "SE",
            "front_desk": {"email": "info@hds.example.se", "languages": ["sv"]}});
        let mut cases: Vec<String> = vec![
            service().to_string(),
            practice.to_string(),
            profile.to_string(),
            // kind-specific fields in the wrong kind, also as null
            r#"{"kind":"service","title":{"en":"T"},"description":{"en":"D"},"category":"test-before-invest","maturity":null}"#.into(),
            r#"{"kind":"practice","title":{"en":"T"},"description":{"en":"D"},"practice_type":"app","maturity":"pilot","trl":{"min":1,"max":2}}"#.into(),
            r#"{"kind":"service","title":{"en":"T"},"description":{"en":"D"},"category":"test-before-invest","trl":4}"#.into(),
            r#"{"kind":"service","title":{"en":"T"},"description":{"en":"D"},"category":"test-before-invest","trl":null,"cost":null}"#.into(),
            // duplicates, unknown keys, missing fields, wrong types, not an object
            r#"{"kind":"service","title":{"en":"T"},"title":{"en":"U"},"description":{"en":"D"},"category":"test-before-invest"}"#.into(),
            r#"{"kind":"service","title":{"en":"T"},"description":{"en":"D"},"category":"test-before-invest","colour":1}"#.into(),
            r#"{"kind":"service","title":{"en":"T"},"category":"test-before-invest"}"#.into(),
            r#"{"kind":"service","title":{"en":"T"},"description":{"en":"D"},"category":"test-before-invest","schema":"1"}"#.into(),
            r#"{"kind":"profile","name":null,"title":{"en":"T"},"hub_type":"edih","country":"SE"}"#.into(),
            r#"{"kind":"profile","name":"N","title":{"en":"T"},"hub_type":"edih","country":"SE","regions":null}"#.into(),
            r#"["service",null,null,null,null,null,null,null,{"en":"T"}]"#.into(),
            r#"{"kind":7}"#.into(),
            r#"{"kind":"service"} x"#.into(),
        ];
        cases.push(serde_json::to_string_pretty(&practice).expect("json"));
        for case in &cases {
            let direct = Record::from_json(case.as_bytes());
            let via_value = serde_json::from_slice::<Value>(case.as_bytes())
                .map_err(|e| RecordError::syntax(format!("not valid JSON: {e}")))
                .and_then(|v| {
                    Record::from_value_with(
                        v,
                        Known {
                            publisher: None,
                            input_len: Some(case.len()),
                        },
                    )
                });
            assert_eq!(direct, via_value, "{case}");
            let fast = serde_json::from_slice::<AnyRecord>(case.as_bytes())
                .ok()
                .and_then(AnyRecord::into_record);
            if let Some(fast) = fast {
                if case.trim_start().starts_with('{') {
                    assert_eq!(Ok(fast), via_value, "{case}");
                }
            }
        }
    }

    #[test]
    fn a_foreign_publisher_is_still_decoded() {
        let mut v = service();
        v["publisher"] = "did:key:z6Mk-not-a-key".into();
        let json = v.to_string();
        let owner = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let e = Record::from_json_published_by(&json, owner).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("publisher"));
    }

    #[test]
    fn toml_records_parse_like_json() {
        let r = Record::from_toml(
            r#"kind = "practice"
            id = "telemonitoring"
            practice_type = "complex-solution"
            maturity = "scaled"
            countries = ["SE", "ES"]
            [title]
            en = "Telemonitoring of heart failure"
            [description]
            en = "Patients measure at home; nurses follow up."
            "#,
        )
        .expect("valid");
        assert_eq!(r.kind(), RecordKind::Practice);
        assert!(Record::from_toml("kind = ").is_err());
        assert!(Record::from_json(b"{\"kind\": \"service\",").is_err());
    }
}
