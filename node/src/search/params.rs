//! Query parameters as the HTTP API takes them (strings), validated into typed queries.
//! Every refusal names the parameter and says what is valid; nothing is searched until every
//! parameter is valid. List parameters take comma-separated values (`technology=iot,robotics`
//! means either).

use hubcat_protocol::{vocab, HubId, RecordKind};
use serde::{Deserialize, Serialize};

use super::insight::{GapAxis, GapsQuery, MatchRequest};
use super::{SearchQuery, MAX_PER_PAGE};

/// The longest query text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 1000;
/// The most values one list parameter takes.
const MAX_VALUES: usize = 50;

/// A parameter the node refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {detail}")]
pub struct ParamError {
    pub field: &'static str,
    pub detail: String,
}

fn bad(field: &'static str, detail: impl Into<String>) -> ParamError {
    ParamError {
        field,
        detail: detail.into(),
    }
}

/// `GET /v1/search` parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Free text in any language.
    pub q: Option<String>,
    /// profile, service, practice.
    pub kind: Option<String>,
    pub category: Option<String>,
    pub technology: Option<String>,
    pub sector: Option<String>,
    /// ISO 3166-1 alpha-2 (`EL` is read as Greece, `GR`): records serving the country or a
    /// region in it.
    pub country: Option<String>,
    /// NUTS code: records naming it or one of its sub-regions (`SE1` matches `SE11`).
    pub region: Option<String>,
    /// ISO 639-1: records written in or serving the language.
    pub language: Option<String>,
    pub maturity: Option<String>,
    pub practice_type: Option<String>,
    /// Hub type of the publishing hub's profile.
    pub hub_type: Option<String>,
    /// A publisher's did.
    pub publisher: Option<String>,
    pub open_to_twinning: Option<String>,
    /// true: confirmed within the stale period; false: stale only.
    pub fresh: Option<String>,
    /// The user's language (ISO 639-1): its records rank first, titles are shown in it.
    pub lang: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Hits per page, 1-100 (default 20).
    pub per_page: Option<String>,
}

/// Non-empty comma-separated values of a parameter.
fn values(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn checked(
    field: &'static str,
    raw: &Option<String>,
    ok: impl Fn(&str) -> Option<String>,
    valid: impl Fn() -> String,
) -> Result<Vec<String>, ParamError> {
    let vs = values(raw);
    if vs.len() > MAX_VALUES {
        return Err(bad(field, format!("at most {MAX_VALUES} values")));
    }
    vs.iter()
        .map(|v| {
            ok(v).ok_or_else(|| {
                bad(
                    field,
                    format!("unknown value `{}`; valid: {}", shown(v), valid()),
                )
            })
        })
        .collect()
}

fn in_vocab(
    field: &'static str,
    raw: &Option<String>,
    v: &'static vocab::Vocabulary,
) -> Result<Vec<String>, ParamError> {
    checked(
        field,
        raw,
        |s| v.contains(s).then(|| s.to_owned()),
        || v.choices(),
    )
}

/// A value as shown in a message: at most 60 characters.
fn shown(v: &str) -> String {
    v.chars().take(60).collect()
}

/// An ISO country code, reading NUTS's `EL` as Greece's ISO `GR`.
pub fn country(code: &str) -> Option<String> {
    let code = code.to_ascii_uppercase();
    let code = if code == "EL" { "GR".to_owned() } else { code };
    vocab::is_country(&code).then_some(code)
}

fn language(code: &str) -> Option<String> {
    let code = code.to_ascii_lowercase();
    vocab::is_language(&code).then_some(code)
}

fn region(code: &str) -> Option<String> {
    let code = code.to_ascii_uppercase();
    vocab::is_region(&code).then_some(code)
}

fn boolean(field: &'static str, raw: &Option<String>) -> Result<Option<bool>, ParamError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(bad(
            field,
            format!("`{}` is not a boolean; valid: true, false", shown(other)),
        )),
    }
}

fn number(
    field: &'static str,
    raw: &Option<String>,
    default: usize,
    max: usize,
) -> Result<usize, ParamError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(
                field,
                format!("`{}` is not a whole number from 1 to {max}", shown(v)),
            )),
        },
    }
}

fn text(field: &'static str, raw: &Option<String>) -> Result<Option<String>, ParamError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.len() > MAX_TEXT_BYTES => {
            Err(bad(field, format!("longer than {MAX_TEXT_BYTES} bytes")))
        }
        Some(t) => Ok(Some(t.to_owned())),
    }
}

fn one_language(field: &'static str, raw: &Option<String>) -> Result<Option<String>, ParamError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(l) => language(l).map(Some).ok_or_else(|| {
            bad(
                field,
                format!(
                    "unknown language `{}`; valid: ISO 639-1 codes (en, sv, es, el …)",
                    shown(l)
                ),
            )
        }),
    }
}

/// Country codes, for messages.
const COUNTRY_CHOICES: &str = "ISO 3166-1 alpha-2 codes (SE, ES, GR or EL, XK …)";
const REGION_CHOICES: &str = "NUTS 2024 or statistical region codes (SE1, SE11, EL52 …)";

impl SearchParams {
    pub fn validate(&self) -> Result<SearchQuery, ParamError> {
        let kinds = checked(
            "kind",
            &self.kind,
            |k| RecordKind::parse(k).ok().map(|k| k.as_str().to_owned()),
            || "profile, service, practice".to_owned(),
        )?
        .iter()
        .filter_map(|k| RecordKind::parse(k).ok())
        .collect();
        let publishers = checked(
            "publisher",
            &self.publisher,
            |p| HubId::from_did(p).ok().map(|id| id.to_did()),
            || "a hub's did:key (did:key:z6Mk…)".to_owned(),
        )?;
        let lang = one_language("lang", &self.lang)?;
        let languages = checked("language", &self.language, language, || {
            "ISO 639-1 codes (en, sv, es, el …)".to_owned()
        })?;
        Ok(SearchQuery {
            text: text("q", &self.q)?,
            kinds,
            categories: in_vocab("category", &self.category, &vocab::CATEGORIES)?,
            technologies: in_vocab("technology", &self.technology, &vocab::TECHNOLOGIES)?,
            sectors: in_vocab("sector", &self.sector, &vocab::SECTORS)?,
            countries: checked("country", &self.country, country, || {
                COUNTRY_CHOICES.to_owned()
            })?,
            regions: checked("region", &self.region, region, || REGION_CHOICES.to_owned())?,
            maturities: in_vocab("maturity", &self.maturity, &vocab::MATURITY)?,
            practice_types: in_vocab("practice_type", &self.practice_type, &vocab::PRACTICE_TYPES)?,
            hub_types: in_vocab("hub_type", &self.hub_type, &vocab::HUB_TYPES)?,
            publishers,
            open_to_twinning: boolean("open_to_twinning", &self.open_to_twinning)?,
            fresh: boolean("fresh", &self.fresh)?,
            lang: lang.or_else(|| (languages.len() == 1).then(|| languages[0].clone())),
            languages,
            page: number("page", &self.page, 1, 1_000_000)?,
            per_page: number("per_page", &self.per_page, 20, MAX_PER_PAGE)?,
        })
    }
}

/// `GET /v1/gaps` parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GapsParams {
    /// `country` (default) or `region` (NUTS).
    pub by: Option<String>,
    /// Only these categories (comma-separated); default all four.
    pub category: Option<String>,
    /// Count only services with one of these technologies.
    pub technology: Option<String>,
}

impl GapsParams {
    pub fn validate(&self) -> Result<GapsQuery, ParamError> {
        let by = match self.by.as_deref().map(str::trim) {
            None | Some("") | Some("country") => GapAxis::Country,
            Some("region") => GapAxis::Region,
            Some(other) => {
                return Err(bad(
                    "by",
                    format!("`{}` is not an axis; valid: country, region", shown(other)),
                ))
            }
        };
        Ok(GapsQuery {
            by,
            categories: in_vocab("category", &self.category, &vocab::CATEGORIES)?,
            technologies: in_vocab("technology", &self.technology, &vocab::TECHNOLOGIES)?,
        })
    }
}

/// `POST /v1/match` body: a need to find services for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchParams {
    /// What is needed, in any language.
    pub need: String,
    /// Where the requester is (ISO 3166-1; `EL` is read as Greece).
    pub country: String,
    /// The requester's NUTS region, for "same region" above "same country".
    #[serde(default)]
    pub region: Option<String>,
    /// The language the requester wants to be served in (ISO 639-1).
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub technologies: Vec<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    /// The requester's technology readiness level (1-9).
    #[serde(default)]
    pub trl: Option<u8>,
    /// Results to return, 1-100 (default 10).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl MatchParams {
    pub fn validate(&self) -> Result<MatchRequest, ParamError> {
        let need = self.need.trim();
        if need.is_empty() {
            return Err(bad("need", "required: describe what is needed"));
        }
        if need.len() > MAX_TEXT_BYTES {
            return Err(bad("need", format!("longer than {MAX_TEXT_BYTES} bytes")));
        }
        let country = country(self.country.trim()).ok_or_else(|| {
            bad(
                "country",
                format!(
                    "unknown country `{}`; valid: {COUNTRY_CHOICES}",
                    shown(&self.country)
                ),
            )
        })?;
        let region = match self.region.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(region(r).ok_or_else(|| {
                bad(
                    "region",
                    format!("unknown region `{}`; valid: {REGION_CHOICES}", shown(r)),
                )
            })?),
        };
        let language = one_language("language", &self.language)?;
        let category = in_vocab("category", &self.category, &vocab::CATEGORIES)?
            .into_iter()
            .next();
        let technologies = in_vocab(
            "technologies",
            &Some(self.technologies.join(",")),
            &vocab::TECHNOLOGIES,
        )?;
        let audience = in_vocab(
            "audience",
            &Some(self.audience.join(",")),
            &vocab::AUDIENCES,
        )?;
        if let Some(t) = self.trl {
            if !(1..=9).contains(&t) {
                return Err(bad("trl", format!("{t} is not a TRL; valid: 1 to 9")));
            }
        }
        let limit = match self.limit {
            None => 10,
            Some(n) if (1..=MAX_PER_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(bad(
                    "limit",
                    format!("{n} is not a whole number from 1 to {MAX_PER_PAGE}"),
                ))
            }
        };
        Ok(MatchRequest {
            need: need.to_owned(),
            country,
            region,
            language,
            category,
            technologies,
            audience,
            trl: self.trl,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_search_parameters_are_named() {
        let p = |f: fn(&mut SearchParams)| {
            let mut params = SearchParams::default();
            f(&mut params);
            params.validate().map(|_| ()).map_err(|e| e.field)
        };
        assert_eq!(p(|s| s.kind = Some("hub".into())), Err("kind"));
        assert_eq!(p(|s| s.category = Some("testing".into())), Err("category"));
        assert_eq!(p(|s| s.country = Some("XX".into())), Err("country"));
        assert_eq!(p(|s| s.region = Some("SE99".into())), Err("region"));
        assert_eq!(p(|s| s.per_page = Some("0".into())), Err("per_page"));
        assert_eq!(p(|s| s.per_page = Some("101".into())), Err("per_page"));
        assert_eq!(p(|s| s.page = Some("x".into())), Err("page"));
        assert_eq!(p(|s| s.fresh = Some("yes".into())), Err("fresh"));
        assert_eq!(
            p(|s| s.publisher = Some("did:web:x".into())),
            Err("publisher")
        );
        assert_eq!(p(|s| s.lang = Some("xx".into())), Err("lang"));
        assert_eq!(p(|s| s.q = Some("a".repeat(2000))), Err("q"));
        assert_eq!(p(|s| s.technology = Some("iot,robotics".into())), Ok(()));
    }

    #[test]
    fn greece_is_el_in_nuts_and_gr_in_iso() {
        let q = SearchParams {
            country: Some("EL".into()),
            region: Some("el52".into()),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(q.countries, ["GR"]);
        assert_eq!(q.regions, ["EL52"]);
    }
}
