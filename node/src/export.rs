//! Exports of the federated catalogue (or a filtered part of it): `json` (the records as the
//! API serves them, with provenance), `csv` (the record layout's columns, see
//! [`crate::import`]) and `dcat-ap` (DCAT-AP 3 JSON-LD). JSON and CSV import again with
//! `hubcat import`; the offline-verifiable `bundle` stays in the engine.
//!
//! **DCAT-AP.** One `dcat:Catalog` (published by the exporting hub's did) lists one
//! `dcat:CatalogRecord` per record — `dct:issued`, `dct:modified`, `dct:publisher` (the
//! publishing hub's did), `foaf:primaryTopic` — whose provenance is the record's signature:
//! `prov:wasAttributedTo` the publisher, a `dct:provenance` statement and the raw proof
//! (`hubcat:changeHash`, `hubcat:signature`, `hubcat:signedAt`), enough to verify the record
//! against the publisher's key offline. Services are described with CPSV-AP
//! (`cpsv:PublicService`, `cv:hasCompetentAuthority`, `cv:hasChannel`, `cv:hasCost`,
//! `cv:sector`, `cv:thematicArea` …), practices as `dcat:Resource`, hub profiles as
//! `dcat:Resource` and `foaf:Organization`. The `@context` is written inline, so a JSON-LD
//! processor expands the document without fetching anything. Terms DCAT-AP and CPSV-AP lack
//! (TRL, maturity, twinning, audience) use the `hubcat:` namespace (`urn:hubcat:ns:`).
//! Record and resource IRIs are DID URLs: `did:key:z6Mk…/<slug>` for the resource,
//! `…/<slug>#record` for its catalogue record.

use serde_json::{json, Map, Value};

use crate::engine::RecordView;
use crate::import::{self, ImportError};

/// The formats `hubcat export` and `GET /v1/export` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Bundle,
    Json,
    Csv,
    DcatAp,
}

impl ExportFormat {
    pub const CHOICES: &'static str = "bundle, json, csv, dcat-ap";

    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "bundle" => Some(ExportFormat::Bundle),
            "json" => Some(ExportFormat::Json),
            "csv" => Some(ExportFormat::Csv),
            "dcat-ap" | "dcat" | "jsonld" => Some(ExportFormat::DcatAp),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Bundle | ExportFormat::Json => "application/json",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::DcatAp => "application/ld+json",
        }
    }
}

/// The records as JSON: an array of the API's record views (id, kind, publisher, record,
/// provenance); `hubcat import` reads it back.
pub fn to_json(views: &[RecordView]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(views)
}

/// The records as CSV in the import layout (provenance is not part of it).
pub fn to_csv(views: &[RecordView]) -> Result<String, ImportError> {
    let records = views
        .iter()
        .map(|v| serde_json::to_value(&v.record).map_err(|e| ImportError::Csv(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    import::records_to_csv(&records)
}

/// Who exports: the catalogue's publisher in the DCAT-AP document.
#[derive(Debug, Clone)]
pub struct Exporter {
    pub did: String,
    pub name: String,
    /// RFC 3339 time of the export.
    pub created: String,
}

/// The JSON-LD context, inline so that no processor has to fetch one.
pub fn dcat_context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "cpsv": "http://purl.org/vocab/cpsv#",
        "cv": "http://data.europa.eu/m8g/",
        "prov": "http://www.w3.org/ns/prov#",
        "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "adms": "http://www.w3.org/ns/adms#",
        "hubcat": "urn:hubcat:ns:"
    })
}

/// The records as a DCAT-AP 3 catalogue in JSON-LD (see the module doc).
pub fn to_dcat_ap(views: &[RecordView], exporter: &Exporter) -> Value {
    let mut records = Vec::with_capacity(views.len());
    let mut resources = Vec::with_capacity(views.len());
    for v in views {
        let (record, resource) = dcat_record(v);
        records.push(record);
        resources.push(resource);
    }
    json!({
        "@context": dcat_context(),
        "@id": format!("{}/catalogue", exporter.did),
        "@type": "dcat:Catalog",
        "dct:title": {"@value": format!("Federated catalogue of innovation hubs, as held by {}", exporter.name), "@language": "en"},
        "dct:description": {"@value": "Service offerings, digital-health practices and hub profiles published and signed by the hubs of the federation.", "@language": "en"},
        "dct:publisher": {"@id": exporter.did, "@type": "foaf:Agent", "foaf:name": exporter.name},
        "dct:issued": datetime(&exporter.created),
        "dct:modified": datetime(&exporter.created),
        "dcat:record": records,
        "dcat:resource": resources,
    })
}

fn datetime(s: &str) -> Value {
    json!({"@value": s, "@type": "xsd:dateTime"})
}

fn typed(value: impl Into<Value>, datatype: &str) -> Value {
    json!({"@value": value.into(), "@type": datatype})
}

/// A language map as language-tagged literals.
fn lang_values(map: Option<&Value>) -> Vec<Value> {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(lang, text)| {
                    text.as_str()
                        .map(|t| json!({"@value": t, "@language": lang}))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(t) => t.get("term").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A NUTS code as the EU's NUTS IRI, a country as a location named by its ISO code.
fn place(code: &str) -> Value {
    if code.len() > 2 {
        json!({"@id": format!("http://data.europa.eu/nuts/code/{code}")})
    } else {
        json!({"@type": "dct:Location", "dct:identifier": code, "rdfs:label": code})
    }
}

fn concept(scheme: &str, slug: &str) -> Value {
    json!({"@id": format!("hubcat:{scheme}/{slug}")})
}

/// Put `value` under `key` unless it is empty.
fn put(node: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if !empty {
        node.insert(key.to_owned(), value);
    }
}

fn dcat_record(v: &RecordView) -> (Value, Value) {
    let r = serde_json::to_value(&v.record).unwrap_or(Value::Null);
    let slot = v.id.split('@').next().unwrap_or(&v.id);
    let resource_iri = format!("{}/{slot}", v.publisher);
    let field = |k: &str| r.get(k);
    let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);

    let mut res = Map::new();
    res.insert("@id".into(), json!(resource_iri));
    let types = match v.kind {
        hubcat_protocol::RecordKind::Service => json!("cpsv:PublicService"),
        hubcat_protocol::RecordKind::Practice => json!("dcat:Resource"),
        hubcat_protocol::RecordKind::Profile => json!(["dcat:Resource", "foaf:Organization"]),
    };
    res.insert("@type".into(), types);
    res.insert("dct:identifier".into(), json!(v.id));
    put(
        &mut res,
        "dct:title",
        Value::Array(lang_values(field("title"))),
    );
    put(
        &mut res,
        "dct:description",
        Value::Array(lang_values(field("description"))),
    );
    res.insert("dct:publisher".into(), json!({"@id": v.publisher}));
    if let Some(issued) = text("issued") {
        res.insert("dct:issued".into(), datetime(&issued));
    }
    if let Some(modified) = text("modified") {
        res.insert("dct:modified".into(), datetime(&modified));
    }
    put(
        &mut res,
        "dct:language",
        Value::Array(
            strings(field("languages"))
                .iter()
                .map(|l| typed(l.as_str(), "xsd:language"))
                .collect(),
        ),
    );
    let keywords: Vec<Value> = strings(field("technologies"))
        .into_iter()
        .map(Value::String)
        .collect();
    put(&mut res, "dcat:keyword", Value::Array(keywords));
    let sectors: Vec<Value> = strings(field("sectors"))
        .into_iter()
        .map(Value::String)
        .collect();
    put(&mut res, "cv:sector", Value::Array(sectors));
    match v.kind {
        hubcat_protocol::RecordKind::Service => service_terms(&mut res, &r, &v.publisher),
        hubcat_protocol::RecordKind::Practice => practice_terms(&mut res, &r),
        hubcat_protocol::RecordKind::Profile => profile_terms(&mut res, &r),
    }

    let p = &v.provenance;
    let mut rec = Map::new();
    rec.insert("@id".into(), json!(format!("{resource_iri}#record")));
    rec.insert("@type".into(), json!("dcat:CatalogRecord"));
    rec.insert("dct:identifier".into(), json!(v.id));
    rec.insert("foaf:primaryTopic".into(), json!({"@id": resource_iri}));
    rec.insert("dct:publisher".into(), json!({"@id": v.publisher}));
    if let Some(issued) = text("issued") {
        rec.insert("dct:issued".into(), datetime(&issued));
    }
    if let Some(modified) = text("modified") {
        rec.insert("dct:modified".into(), datetime(&modified));
    }
    if let Some(confirmed) = text("last_confirmed") {
        rec.insert("hubcat:lastConfirmed".into(), datetime(&confirmed));
    }
    rec.insert(
        "dct:conformsTo".into(),
        json!({"@id": "hubcat:record-layout/1"}),
    );
    rec.insert("prov:wasAttributedTo".into(), json!({"@id": v.publisher}));
    rec.insert("prov:generatedAtTime".into(), datetime(&p.signed_at));
    rec.insert(
        "dct:provenance".into(),
        json!({
            "@type": "dct:ProvenanceStatement",
            "rdfs:label": {"@value": format!(
                "Signed with ed25519 by {} over Automerge change {} at {} (message: hubcat/change/v1, document, change hash).",
                p.publisher, p.change_hash, p.signed_at
            ), "@language": "en"},
        }),
    );
    rec.insert(
        "hubcat:changeHash".into(),
        typed(p.change_hash.as_str(), "xsd:hexBinary"),
    );
    rec.insert(
        "hubcat:signature".into(),
        typed(p.signature.as_str(), "xsd:hexBinary"),
    );
    rec.insert("hubcat:signedAt".into(), datetime(&p.signed_at));
    (Value::Object(rec), Value::Object(res))
}

fn service_terms(res: &mut Map<String, Value>, r: &Value, publisher: &str) {
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    res.insert("cv:hasCompetentAuthority".into(), json!({"@id": publisher}));
    if let Some(c) = text("category") {
        res.insert("cv:thematicArea".into(), concept("category", c));
    }
    put(
        res,
        "hubcat:audience",
        Value::Array(
            strings(r.get("audience"))
                .iter()
                .map(|a| concept("audience", a))
                .collect(),
        ),
    );
    if let Some(trl) = r.get("trl") {
        if let Some(min) = trl.get("min").and_then(Value::as_u64) {
            res.insert("hubcat:trlMin".into(), typed(min, "xsd:integer"));
        }
        if let Some(max) = trl.get("max").and_then(Value::as_u64) {
            res.insert("hubcat:trlMax".into(), typed(max, "xsd:integer"));
        }
    }
    put(
        res,
        "dct:spatial",
        Value::Array(
            strings(r.get("area_served"))
                .iter()
                .map(|c| place(c))
                .collect(),
        ),
    );
    if let Some(b) = r.get("cross_border").and_then(Value::as_bool) {
        res.insert("hubcat:crossBorder".into(), typed(b, "xsd:boolean"));
    }
    if let Some(d) = text("delivery") {
        res.insert(
            "cv:hasChannel".into(),
            json!({"@type": "cv:Channel", "dct:type": concept("delivery", d)}),
        );
    }
    if let Some(c) = text("cost") {
        res.insert(
            "cv:hasCost".into(),
            json!({"@type": "cv:Cost", "dct:type": concept("cost", c)}),
        );
    }
    if let Some(mail) = text("contact") {
        res.insert(
            "cv:hasContactPoint".into(),
            json!({"@type": "cv:ContactPoint", "vcard:hasEmail": {"@id": format!("mailto:{mail}")}}),
        );
    }
    if let Some(url) = text("landing_page") {
        res.insert("dcat:landingPage".into(), json!({"@id": url}));
    }
    let from = text("valid_from");
    let until = text("valid_until");
    if from.is_some() || until.is_some() {
        let mut period = Map::new();
        period.insert("@type".into(), json!("dct:PeriodOfTime"));
        if let Some(f) = from {
            period.insert("dcat:startDate".into(), typed(f, "xsd:date"));
        }
        if let Some(u) = until {
            period.insert("dcat:endDate".into(), typed(u, "xsd:date"));
        }
        res.insert("dct:temporal".into(), Value::Object(period));
    }
}

fn practice_terms(res: &mut Map<String, Value>, r: &Value) {
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    if let Some(t) = text("practice_type") {
        res.insert("dct:type".into(), concept("practice-type", t));
    }
    if let Some(m) = text("maturity") {
        res.insert("adms:status".into(), concept("maturity", m));
    }
    if let Some(s) = text("scale") {
        res.insert("hubcat:scale".into(), concept("scale", s));
    }
    if let Some(trl) = r.get("trl").and_then(Value::as_u64) {
        res.insert("hubcat:trl".into(), typed(trl, "xsd:integer"));
    }
    if let Some(owner) = text("owner") {
        res.insert(
            "dct:creator".into(),
            json!({"@type": "foaf:Organization", "foaf:name": owner}),
        );
    }
    put(
        res,
        "dct:spatial",
        Value::Array(
            strings(r.get("countries"))
                .iter()
                .map(|c| place(c))
                .collect(),
        ),
    );
    put(
        res,
        "hubcat:evidence",
        Value::Array(
            strings(r.get("evidence"))
                .into_iter()
                .map(Value::String)
                .collect(),
        ),
    );
    if let Some(b) = r.get("open_to_twinning").and_then(Value::as_bool) {
        res.insert("hubcat:openToTwinning".into(), typed(b, "xsd:boolean"));
    }
}

fn profile_terms(res: &mut Map<String, Value>, r: &Value) {
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    if let Some(name) = text("name") {
        res.insert("foaf:name".into(), json!(name));
    }
    if let Some(t) = text("hub_type") {
        res.insert("dct:type".into(), concept("hub-type", t));
    }
    let mut places: Vec<Value> = text("country").map(place).into_iter().collect();
    places.extend(strings(r.get("regions")).iter().map(|c| place(c)));
    put(res, "dct:spatial", Value::Array(places));
    if let Some(url) = text("website") {
        res.insert("foaf:homepage".into(), json!({"@id": url}));
    }
    if let Some(desk) = r.get("front_desk") {
        let mut kind = Map::new();
        kind.insert("@type".into(), json!("vcard:Organization"));
        if let Some(mail) = desk.get("email").and_then(Value::as_str) {
            kind.insert(
                "vcard:hasEmail".into(),
                json!({"@id": format!("mailto:{mail}")}),
            );
        }
        if let Some(phone) = desk.get("phone").and_then(Value::as_str) {
            kind.insert("vcard:hasTelephone".into(), json!(phone));
        }
        if let Some(hours) = desk.get("hours").and_then(Value::as_str) {
            kind.insert("cv:openingHours".into(), json!(hours));
        }
        res.insert("dcat:contactPoint".into(), Value::Object(kind));
    }
    put(
        res,
        "hubcat:partner",
        Value::Array(
            strings(r.get("partners"))
                .into_iter()
                .map(|p| json!({"@type": "foaf:Organization", "foaf:name": p}))
                .collect(),
        ),
    );
}
