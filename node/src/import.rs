//! Importing records from files: JSON arrays, JSON lines and CSV in the public record layout
//! (RECORDS.md), turned into one JSON record per row with the row's number kept for reports.
//!
//! Used on both sides of `hubcat import`: the CLI parses the file (so a broken file is refused
//! before anything is sent) and posts the rows in batches to `POST /v1/import`, which also
//! takes CSV and JSON lines bodies directly. The node validates each row, signs each valid one
//! as its own change and stores a batch with one durable write
//! ([`Catalogue::publish_batch`](crate::engine::Catalogue::publish_batch)).
//!
//! **CSV layout.** A column is named by the field's path in the JSON layout: `kind`, `id`,
//! `category`, `trl.min`, `front_desk.email` … Language maps take one column per language,
//! `title.en`, `title.sv`, `description.es`; a bare `title` or `description` column holds the
//! text in the default language (English unless told otherwise). Lists (`languages`,
//! `area_served`, `evidence` …) are `;`-separated, with `\;` for a semicolon inside an item
//! and `\\` for a backslash; technologies and sectors are `slug` or `slug:level`. Booleans
//! are `true`/`false` (also `yes`/`no`, `1`/`0`); an empty cell is an absent field. A
//! practice's single TRL is the column `trl`, a service's range `trl.min` and `trl.max`.
//! Unknown columns refuse the whole file (a typo in a header would otherwise drop a field from
//! every row).
//!
//! **Rows.** `row` is the 1-based position of the record in the file; `line` is the line it
//! starts on (for JSON lines and CSV, where the header is line 1), which is what an editor
//! shows.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// The file formats `hubcat import` and `POST /v1/import` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// A JSON array of records (or of records as the API serves them, with `record` and
    /// `provenance`), or an object with such an array under `records`.
    Json,
    /// One JSON record per line.
    Jsonl,
    /// CSV with a header row of field paths.
    Csv,
}

impl ImportFormat {
    pub fn parse(s: &str) -> Result<ImportFormat, ImportError> {
        match s {
            "json" => Ok(ImportFormat::Json),
            "jsonl" | "ndjson" => Ok(ImportFormat::Jsonl),
            "csv" => Ok(ImportFormat::Csv),
            other => Err(ImportError::Format(format!(
                "unknown import format `{other}`; valid: json, jsonl, csv"
            ))),
        }
    }

    /// The format of a file from its name, else from its first non-blank byte (`[` JSON,
    /// `{` JSON lines, anything else CSV).
    pub fn detect(name: &str, bytes: &[u8]) -> ImportFormat {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            return ImportFormat::Csv;
        }
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            return ImportFormat::Jsonl;
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => ImportFormat::Json,
            Some(b'{') if lower.ends_with(".json") && looks_like_one_document(bytes) => {
                ImportFormat::Json
            }
            Some(b'{') => ImportFormat::Jsonl,
            _ => ImportFormat::Csv,
        }
    }

    /// The format named by an HTTP content type.
    pub fn from_content_type(content_type: &str) -> ImportFormat {
        let ct = content_type.to_ascii_lowercase();
        if ct.contains("csv") {
            ImportFormat::Csv
        } else if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-seq") {
            ImportFormat::Jsonl
        } else {
            ImportFormat::Json
        }
    }
}

/// A `.json` file holding one object (`{"records": [...]}`) rather than JSON lines.
fn looks_like_one_document(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.get("records").is_some())
}

/// A whole file refused before any row is looked at.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Format(String),
    #[error("the file is not UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("CSV header: {0}")]
    Header(String),
    #[error("CSV: {0}")]
    Csv(String),
}

/// Why a row was refused: the field to blame (a path such as `title.en` or a CSV column) and
/// what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
}

impl RowError {
    fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        RowError {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }
}

/// One record of an import file, as JSON, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based position of the record in the file.
    pub row: usize,
    /// Line the record starts on (JSON lines, CSV); `None` inside a JSON array.
    pub line: Option<usize>,
    pub value: Result<Value, RowError>,
}

/// Options for reading CSV.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The language of bare `title` / `description` columns.
    pub default_language: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            default_language: "en".into(),
        }
    }
}

/// Read every row of `bytes` in `format`. A file that cannot be read as a whole (not UTF-8,
/// a broken JSON array, an unknown CSV column) is an error; a row that cannot be read is a
/// row error and the other rows still count.
pub fn parse_rows(
    format: ImportFormat,
    bytes: &[u8],
    csv: &CsvOptions,
) -> Result<Vec<Row>, ImportError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ImportError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        ImportFormat::Json => parse_json(text),
        ImportFormat::Jsonl => Ok(parse_jsonl(text)),
        ImportFormat::Csv => parse_csv(text, csv),
    }
}

fn parse_json(text: &str) -> Result<Vec<Row>, ImportError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ImportError::Json(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("records") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ImportError::Json(
                    "expected an array of records (or an object with a `records` array)".into(),
                ))
            }
        },
        _ => {
            return Err(ImportError::Json(
                "expected an array of records (or an object with a `records` array)".into(),
            ))
        }
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| Row {
            row: i + 1,
            line: None,
            value: record_of(v),
        })
        .collect())
}

fn parse_jsonl(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str::<Value>(line)
            .map_err(|e| RowError {
                field: None,
                detail: format!("not valid JSON: {e}"),
            })
            .and_then(record_of);
        rows.push(Row {
            row: rows.len() + 1,
            line: Some(i + 1),
            value,
        });
    }
    rows
}

/// A record object, unwrapping the API's `{id, kind, publisher, record, provenance}` views
/// (what `GET /v1/records` and `export --format json` give), so exports import again.
pub fn record_of(value: Value) -> Result<Value, RowError> {
    match value {
        // A record never has a `record` field: this is a view.
        Value::Object(mut map) if map.contains_key("record") => match map.remove("record") {
            Some(record @ Value::Object(_)) => Ok(record),
            _ => Err(RowError::field("record", "must be a record object")),
        },
        v @ Value::Object(_) => Ok(v),
        other => Err(RowError {
            field: None,
            detail: format!("a record must be a JSON object, got {}", type_name(&other)),
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// How a CSV cell becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Text,
    Int,
    Bool,
    List,
    /// `slug` or `slug:level`.
    Terms,
    /// One language of a language map (`title.en`), or the default language (`title`).
    Lang,
}

/// Every CSV column of the record layout (lists and language maps as described in the module
/// doc), in the order exports write them. `title` and `description` stand for their
/// per-language columns.
const COLUMNS: &[(&str, Cell)] = &[
    ("kind", Cell::Text),
    ("id", Cell::Text),
    ("publisher", Cell::Text),
    ("schema", Cell::Int),
    ("issued", Cell::Text),
    ("modified", Cell::Text),
    ("last_confirmed", Cell::Text),
    ("name", Cell::Text),
    ("title", Cell::Lang),
    ("description", Cell::Lang),
    ("hub_type", Cell::Text),
    ("country", Cell::Text),
    ("regions", Cell::List),
    ("website", Cell::Text),
    ("category", Cell::Text),
    ("practice_type", Cell::Text),
    ("maturity", Cell::Text),
    ("scale", Cell::Text),
    ("owner", Cell::Text),
    ("technologies", Cell::Terms),
    ("sectors", Cell::Terms),
    ("audience", Cell::List),
    ("trl", Cell::Int),
    ("trl.min", Cell::Int),
    ("trl.max", Cell::Int),
    ("area_served", Cell::List),
    ("countries", Cell::List),
    ("cross_border", Cell::Bool),
    ("languages", Cell::List),
    ("delivery", Cell::Text),
    ("cost", Cell::Text),
    ("contact", Cell::Text),
    ("landing_page", Cell::Text),
    ("valid_from", Cell::Text),
    ("valid_until", Cell::Text),
    ("evidence", Cell::List),
    ("open_to_twinning", Cell::Bool),
    ("front_desk.email", Cell::Text),
    ("front_desk.phone", Cell::Text),
    ("front_desk.languages", Cell::List),
    ("front_desk.hours", Cell::Text),
    ("partners", Cell::List),
];

/// A header column: the JSON path it fills and how.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    path: Vec<String>,
    cell: Cell,
}

fn column(name: &str, csv: &CsvOptions) -> Result<Column, String> {
    let name = name.trim();
    for (known, cell) in COLUMNS {
        if *cell == Cell::Lang {
            if name == *known {
                return Ok(Column {
                    name: name.to_owned(),
                    path: vec![(*known).to_owned(), csv.default_language.clone()],
                    cell: Cell::Lang,
                });
            }
            if let Some(lang) = name
                .strip_prefix(known)
                .and_then(|rest| rest.strip_prefix('.'))
            {
                if lang.is_empty() || lang.contains('.') {
                    break;
                }
                return Ok(Column {
                    name: name.to_owned(),
                    path: vec![(*known).to_owned(), lang.to_owned()],
                    cell: Cell::Lang,
                });
            }
        } else if name == *known {
            return Ok(Column {
                name: name.to_owned(),
                path: name.split('.').map(str::to_owned).collect(),
                cell: *cell,
            });
        }
    }
    Err(format!(
        "unknown column `{name}`; valid: {}, with title.<lang> and description.<lang> for each language",
        COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn parse_csv(text: &str, csv: &CsvOptions) -> Result<Vec<Row>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| ImportError::Csv(e.to_string()))?
        .clone();
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = BTreeMap::new();
    for name in header.iter() {
        let col = column(name, csv).map_err(ImportError::Header)?;
        if let Some(earlier) = seen.insert(col.path.clone(), col.name.clone()) {
            return Err(ImportError::Header(format!(
                "columns `{earlier}` and `{}` fill the same field",
                col.name
            )));
        }
        columns.push(col);
    }
    if !columns.iter().any(|c| c.name == "kind") {
        return Err(ImportError::Header(
            "no `kind` column; every row needs its kind (profile, service, practice)".into(),
        ));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let (line, value) = match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line() as usize);
                if record.iter().all(|c| c.trim().is_empty()) {
                    continue;
                }
                let value = if record.len() != columns.len() {
                    Err(RowError {
                        field: None,
                        detail: format!(
                            "{} cells, but the header has {} columns",
                            record.len(),
                            columns.len()
                        ),
                    })
                } else {
                    csv_row(&columns, record.iter())
                };
                (line, value)
            }
            Err(e) => (
                e.position().map(|p| p.line() as usize),
                Err(RowError {
                    field: None,
                    detail: format!("unreadable CSV row: {e}"),
                }),
            ),
        };
        rows.push(Row {
            row: i + 1,
            line,
            value,
        });
    }
    Ok(rows)
}

fn csv_row<'a>(
    columns: &[Column],
    cells: impl Iterator<Item = &'a str>,
) -> Result<Value, RowError> {
    let mut out = Map::new();
    for (col, raw) in columns.iter().zip(cells) {
        let cell = raw.trim();
        if cell.is_empty() {
            continue;
        }
        let value = match col.cell {
            Cell::Text | Cell::Lang => Value::String(cell.to_owned()),
            Cell::Int => cell.parse::<i64>().map(Value::from).map_err(|_| {
                RowError::field(&col.name, format!("`{cell}` is not a whole number"))
            })?,
            Cell::Bool => Value::Bool(parse_bool(cell).ok_or_else(|| {
                RowError::field(&col.name, format!("`{cell}` is not true or false"))
            })?),
            Cell::List => Value::Array(
                split_list(cell)
                    .into_iter()
                    .map(Value::String)
                    .collect::<Vec<_>>(),
            ),
            Cell::Terms => Value::Array(
                split_list(cell)
                    .into_iter()
                    .map(|item| term(&item).map_err(|d| RowError::field(&col.name, d)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        insert_path(&mut out, &col.path, value)
            .map_err(|detail| RowError::field(&col.name, detail))?;
    }
    Ok(Value::Object(out))
}

/// Put `value` at `path`, creating objects on the way. A path that runs into a value of
/// another shape (`trl` and `trl.min` in one row) is refused.
fn insert_path(map: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            if map.insert(last.clone(), value).is_some() {
                return Err(format!(
                    "`{last}` is given twice (as a whole and by its parts)"
                ));
            }
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(inner) => insert_path(inner, rest, value),
                _ => Err(format!(
                    "`{first}` is given twice (as a whole and by its parts)"
                )),
            }
        }
    }
}

fn parse_bool(cell: &str) -> Option<bool> {
    match cell.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `slug` or `slug:level` → `"slug"` or `{"term": slug, "level": n}`.
fn term(item: &str) -> Result<Value, String> {
    match item.rsplit_once(':') {
        Some((slug, level)) => {
            let level: u8 = level
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: the level after `:` must be a number 1-5"))?;
            Ok(serde_json::json!({"term": slug.trim(), "level": level}))
        }
        None => Ok(Value::String(item.to_owned())),
    }
}

/// Split a `;`-separated list cell (`\;` is a semicolon inside an item, `\\` a backslash).
pub fn split_list(cell: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => current.push(next),
                None => current.push('\\'),
            },
            ';' => items.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Join list items into one cell, escaping what [`split_list`] would split on.
pub fn join_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| s.replace('\\', "\\\\").replace(';', "\\;"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Records (as JSON objects in the record layout) as CSV in the layout above: every column of
/// the layout, with one `title.<lang>` / `description.<lang>` column per language used.
pub fn records_to_csv(records: &[Value]) -> Result<String, ImportError> {
    let mut languages: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in records {
        for field in ["title", "description"] {
            if let Some(Value::Object(map)) = r.get(field) {
                languages
                    .entry(field)
                    .or_default()
                    .extend(map.keys().cloned());
            }
        }
    }
    let mut header: Vec<(String, Vec<String>, Cell)> = Vec::new();
    for (name, cell) in COLUMNS {
        if *cell == Cell::Lang {
            let langs = languages.get(name).cloned().unwrap_or_default();
            let langs = if langs.is_empty() {
                std::iter::once("en".to_owned()).collect()
            } else {
                langs
            };
            for lang in langs {
                header.push((
                    format!("{name}.{lang}"),
                    vec![(*name).to_owned(), lang],
                    *cell,
                ));
            }
        } else {
            header.push((
                (*name).to_owned(),
                name.split('.').map(str::to_owned).collect(),
                *cell,
            ));
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header.iter().map(|(n, _, _)| n.as_str()))
        .map_err(|e| ImportError::Csv(e.to_string()))?;
    for r in records {
        let cells: Vec<String> = header
            .iter()
            .map(|(_, path, cell)| cell_text(lookup(r, path), *cell))
            .collect();
        w.write_record(&cells)
            .map_err(|e| ImportError::Csv(e.to_string()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ImportError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| ImportError::NotUtf8(e.utf8_error().valid_up_to()))
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn cell_text(v: Option<&Value>, cell: Cell) -> String {
    let Some(v) = v else {
        return String::new();
    };
    match (cell, v) {
        // A service's TRL range sits under trl.min / trl.max; a practice's number under trl.
        (Cell::Int, Value::Object(_)) => String::new(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    Value::Object(t) => match (t.get("term"), t.get("level")) {
                        (Some(Value::String(term)), Some(level)) => format!("{term}:{level}"),
                        _ => item.to_string(),
                    },
                    other => other.to_string(),
                })
                .collect();
            join_list(texts.iter().map(String::as_str))
        }
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_become_the_json_layout() {
        let csv = "kind,id,title,title.sv,description,category,technologies,languages,trl.min,trl.max,cross_border\n\
                   service,lab,AI lab,AI-labb,Test it,test-before-invest,artificial-intelligence:4;iot,sv;en,4,7,yes\n";
        let rows =
            parse_rows(ImportFormat::Csv, csv.as_bytes(), &CsvOptions::default()).expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, Some(2));
        let v = rows[0].value.clone().expect("row");
        assert_eq!(
            v,
            serde_json::json!({"kind": "service", "id": "lab",
                "title": {"en": "AI lab", "sv": "AI-labb"}, "description": {"en": "Test it"},
                "category": "test-before-invest",
                "technologies": [{"term": "artificial-intelligence", "level": 4}, "iot"],
                "languages": ["sv", "en"], "trl": {"min": 4, "max": 7}, "cross_border": true})
        );
    }

    #[test]
    fn bad_cells_name_their_column_and_bad_headers_refuse_the_file() {
        let csv = "kind,trl,open_to_twinning\npractice,seven,true\npractice,7,maybe\n";
        let rows =
            parse_rows(ImportFormat::Csv, csv.as_bytes(), &CsvOptions::default()).expect("parses");
        assert_eq!(
            rows[0].value.as_ref().err().and_then(|e| e.field.clone()),
            Some("trl".into())
        );
        assert_eq!(
            rows[1].value.as_ref().err().and_then(|e| e.field.clone()),
            Some("open_to_twinning".into())
        );
        let err = parse_rows(
            ImportFormat::Csv,
            b"kind,titel\nservice,x\n",
            &CsvOptions::default(),
        )
        .expect_err("unknown column");
        assert!(err.to_string().contains("titel"), "{err}");
    }

    #[test]
    fn lists_escape_semicolons_and_csv_round_trips() {
        let items = ["a;b", "c\\d", "e"];
        assert_eq!(split_list(&join_list(items)), items);
        let record = serde_json::json!({"kind": "practice", "id": "p",
            "title": {"en": "T", "el": "Τ"}, "description": {"en": "D; with a semicolon"},
            "practice_type": "app", "maturity": "pilot", "trl": 6,
            "evidence": ["KPI: 30% fewer visits; measured 2024", "https://example.org"],
            "open_to_twinning": false});
        let csv = records_to_csv(std::slice::from_ref(&record)).expect("csv");
        let rows =
            parse_rows(ImportFormat::Csv, csv.as_bytes(), &CsvOptions::default()).expect("parses");
        assert_eq!(rows[0].value.clone().expect("row"), record);
    }

    #[test]
    fn json_exports_unwrap_to_records_and_jsonl_rows_keep_their_lines() {
        let text = r#"[{"id": "x@z6Mk", "kind": "service", "record": {"kind": "service"}, "provenance": {}}, 3]"#;
        let rows = parse_rows(ImportFormat::Json, text.as_bytes(), &CsvOptions::default())
            .expect("parses");
        assert_eq!(
            rows[0].value.clone().expect("row"),
            serde_json::json!({"kind": "service"})
        );
        assert!(rows[1].value.is_err());
        let rows = parse_rows(
            ImportFormat::Jsonl,
            b"{\"kind\": \"service\"}\n\n{broken\n",
            &CsvOptions::default(),
        )
        .expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].row, rows[1].line), (2, Some(3)));
        assert!(rows[1].value.is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// `hubcat import`
// ---------------------------------------------------------------------------------------------

/// Arguments of `hubcat import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub dir: crate::cli::DataDirArg,
    /// The file to import (`-` for standard input): a JSON array, JSON lines or CSV.
    pub file: String,
    /// json, jsonl or csv (default: from the file name, else from its first character).
    #[arg(long)]
    pub format: Option<String>,
    /// Language of bare `title` / `description` CSV columns.
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// Check every row and report; sign and store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import nothing unless every row is valid (checks the whole file first).
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Publish records exported by another hub as this hub's own (drops their `publisher`).
    #[arg(long)]
    pub rehome: bool,
    /// Rows per request to the node (each request is stored with one durable write).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

/// Largest request body the CLI sends (the node's default limit is 4 MiB).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// What became of one row of the file.
#[derive(Debug, Clone, Serialize)]
pub struct RowOutcome {
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `published`, `valid` (dry run) or `refused`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl RowOutcome {
    fn describe(&self) -> String {
        let place = match self.line {
            Some(line) => format!("row {} (line {line})", self.row),
            None => format!("row {}", self.row),
        };
        let field = self
            .field
            .as_deref()
            .map(|f| format!("field `{f}`: "))
            .unwrap_or_default();
        format!("{place}: {field}{}", self.detail.as_deref().unwrap_or(""))
    }
}

/// Run `hubcat import`: parse the file here, send its rows to the node in batches, report.
pub async fn run_cli(args: ImportArgs, json: bool) -> anyhow::Result<()> {
    use anyhow::{bail, Context as _};
    let client = crate::cli::Client::for_dir(&args.dir.data_dir)?;
    let bytes = if args.file == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file))?
    };
    let format = match &args.format {
        Some(f) => ImportFormat::parse(f)?,
        None => ImportFormat::detect(&args.file, &bytes),
    };
    if !hubcat_protocol::vocab::is_language(&args.lang) {
        bail!(
            "--lang `{}` is not an ISO 639-1 language code (en, sv, es …)",
            args.lang
        );
    }
    let options = CsvOptions {
        default_language: args.lang.clone(),
    };
    let rows = parse_rows(format, &bytes, &options)
        .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was imported", args.file))?;
    let started = std::time::Instant::now();
    let mut outcomes: Vec<Option<RowOutcome>> = vec![None; rows.len()];
    let mut sendable: Vec<(usize, Value)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match &row.value {
            Ok(v) => sendable.push((i, v.clone())),
            Err(e) => {
                outcomes[i] = Some(RowOutcome {
                    row: row.row,
                    line: row.line,
                    status: "refused".into(),
                    id: None,
                    field: e.field.clone(),
                    detail: Some(e.detail.clone()),
                })
            }
        }
    }
    let batches = batches(&sendable, args.batch.max(1));
    let progress = progress_bar(rows.len() as u64);
    progress.inc((rows.len() - sendable.len()) as u64);
    let check_first = args.all_or_nothing && !args.dry_run;
    let passes: &[bool] = if args.dry_run {
        &[true]
    } else if check_first {
        &[true, false]
    } else {
        &[false]
    };
    for &dry_run in passes {
        if !dry_run && outcomes.iter().flatten().any(|o| o.status == "refused") {
            break;
        }
        if check_first && !dry_run {
            progress.set_position((rows.len() - sendable.len()) as u64);
        }
        for batch in &batches {
            let body = serde_json::to_vec(&batch.iter().map(|(_, v)| v).collect::<Vec<_>>())?;
            let path = format!(
                "/v1/import?dry_run={dry_run}&rehome={}&lang={}",
                args.rehome, args.lang
            );
            let text = client
                .raw(
                    reqwest::Method::POST,
                    &path,
                    Some(("application/json", body)),
                    true,
                )
                .await?;
            let report: Value = serde_json::from_str(&text)
                .with_context(|| "the node's import report is not JSON")?;
            for r in report["results"].as_array().into_iter().flatten() {
                let Some(&(i, _)) = r["row"]
                    .as_u64()
                    .and_then(|n| batch.get((n as usize).checked_sub(1)?))
                else {
                    continue;
                };
                let status = r["status"].as_str().unwrap_or("refused").to_owned();
                if dry_run && check_first && status != "refused" {
                    continue;
                }
                outcomes[i] = Some(RowOutcome {
                    row: rows[i].row,
                    line: rows[i].line,
                    status,
                    id: r["id"].as_str().map(str::to_owned),
                    field: r["field"].as_str().map(str::to_owned),
                    detail: r["detail"].as_str().map(str::to_owned),
                });
            }
            progress.inc(batch.len() as u64);
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let outcomes: Vec<RowOutcome> = outcomes.into_iter().flatten().collect();
    let refused = outcomes.iter().filter(|o| o.status == "refused").count();
    let done = outcomes.iter().filter(|o| o.status != "refused").count();
    let nothing = check_first && refused > 0;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": args.file,
                "format": format,
                "dry_run": args.dry_run,
                "rows": rows.len(),
                "published": if args.dry_run || nothing { 0 } else { done },
                "valid": if args.dry_run { done } else { 0 },
                "refused": refused,
                "seconds": elapsed.as_secs_f64(),
                "results": outcomes,
            }))?
        );
    } else {
        for o in outcomes.iter().filter(|o| o.status == "refused") {
            eprintln!("refused {}", o.describe());
        }
        let rate = rows.len() as f64 / elapsed.as_secs_f64().max(1e-9);
        let verb = if args.dry_run { "valid" } else { "published" };
        if nothing {
            eprintln!(
                "{refused} of {} rows refused; nothing was imported (--all-or-nothing)",
                rows.len()
            );
        } else {
            eprintln!(
                "{verb} {done} of {} rows, {refused} refused, in {:.2} s ({rate:.0} rows/s)",
                rows.len(),
                elapsed.as_secs_f64()
            );
        }
    }
    if refused > 0 {
        bail!("{refused} of {} rows refused", rows.len());
    }
    Ok(())
}

/// Rows in batches of at most `max_rows` rows and about [`MAX_REQUEST_BYTES`] of JSON.
fn batches(rows: &[(usize, Value)], max_rows: usize) -> Vec<Vec<(usize, Value)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, v) in rows {
        let size = serde_json::to_string(v).map(|s| s.len()).unwrap_or(0) + 1;
        if !current.is_empty() && (current.len() >= max_rows || bytes + size > MAX_REQUEST_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((*i, v.clone()));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A progress bar on standard error when it is a terminal; hidden otherwise.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}
