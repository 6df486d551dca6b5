//! The baseline the search bench compares against: SQLite FTS5 (rusqlite, bundled) over the
//! same records, answering the same queries with the same result shape — the first page of
//! hits ranked by BM25, the total, and facet counts over every hit.
//!
//! Schema (in memory, as the node's index is):
//! - `fts(body)`: FTS5, `unicode61` with diacritics folded and a prefix index, one row per
//!   record (rowid = record number), body = titles and descriptions in every language plus
//!   the English labels of its vocabulary terms;
//! - `terms(field, value, id)`: one row per filterable and facet value (kind, category,
//!   technology, sector, country, maturity, practice type), `WITHOUT ROWID` with the primary
//!   key `(field, value, id)` so a filter is one index range, and an index on
//!   `(id, field, value)` so the facets of a hit are one index range too.
//!
//! A query's hits are computed once into a materialised CTE; the page, the total and the
//! facets are read from it in one statement. Text words are matched the way the node's index
//! matches them for one- and two-word queries: every word must occur, words of five letters or
//! more also as a prefix (`word*`). FTS5 has no stemmers for the other languages; the prefix
//! match stands in for them, as it does in the node's index for languages tantivy cannot stem.

use anyhow::Context;
use hubcat_node::search::{SearchQuery, FACET_NAMES};
use hubcat_protocol::{vocab, Record};
use rusqlite::{params_from_iter, Connection};

/// Page size, as the node's default.
const PAGE: usize = 20;

pub struct Fts5 {
    db: Connection,
}

fn slugs(terms: &[hubcat_protocol::record::TermRef]) -> impl Iterator<Item = &str> {
    terms.iter().map(|t| t.slug())
}

impl Fts5 {
    /// Index `records` (their position is their rowid); the time it took is measured by the
    /// caller.
    pub fn build(records: &[(usize, Record)]) -> anyhow::Result<Fts5> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA temp_store = MEMORY;
             CREATE VIRTUAL TABLE fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2', prefix = '5');
             CREATE TABLE terms(field TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL,
                                PRIMARY KEY (field, value, id)) WITHOUT ROWID;
             CREATE INDEX terms_of_record ON terms(id, field, value);",
        )?;
        let tx = db.unchecked_transaction()?;
        {
            let mut body_stmt = tx.prepare("INSERT INTO fts(rowid, body) VALUES (?1, ?2)")?;
            let mut term_stmt =
                tx.prepare("INSERT OR IGNORE INTO terms(field, value, id) VALUES (?1, ?2, ?3)")?;
            for (i, (_, record)) in records.iter().enumerate() {
                let id = i as i64;
                let mut body = String::new();
                let mut terms: Vec<(&str, String)> = vec![("kind", record.kind().to_string())];
                let (title, description) = match record {
                    Record::Service(s) => {
                        terms.push(("category", s.category.clone()));
                        for t in slugs(&s.technologies) {
                            terms.push(("technology", t.to_owned()));
                        }
                        for t in slugs(&s.sectors) {
                            terms.push(("sector", t.to_owned()));
                        }
                        (&s.title, &s.description)
                    }
                    Record::Practice(p) => {
                        terms.push(("maturity", p.maturity.clone()));
                        terms.push(("practice_type", p.practice_type.clone()));
                        (&p.title, &p.description)
                    }
                    Record::Profile(p) => {
                        for t in slugs(&p.technologies) {
                            terms.push(("technology", t.to_owned()));
                        }
                        for t in slugs(&p.sectors) {
                            terms.push(("sector", t.to_owned()));
                        }
                        (&p.title, &p.description)
                    }
                };
                for c in record.countries() {
                    terms.push(("country", c));
                }
                for text in title.values().chain(description.values()) {
                    body.push_str(text);
                    body.push('\n');
                }
                for (field, value) in &terms {
                    let vocabulary = match *field {
                        "category" => &vocab::CATEGORIES,
                        "technology" => &vocab::TECHNOLOGIES,
                        "sector" => &vocab::SECTORS,
                        "practice_type" => &vocab::PRACTICE_TYPES,
                        _ => continue,
                    };
                    body.push_str(vocabulary.label(value));
                    body.push('\n');
                }
                body_stmt.execute(rusqlite::params![id, body])?;
                for (field, value) in terms {
                    term_stmt.execute(rusqlite::params![field, value, id])?;
                }
            }
        }
        tx.commit()?;
        db.execute_batch("INSERT INTO fts(fts) VALUES ('optimize'); ANALYZE;")?;
        Ok(Fts5 { db })
    }

    /// Bytes of the database (pages in use).
    pub fn size_bytes(&self) -> anyhow::Result<u64> {
        let pages: i64 = self.db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    /// Run `q`: the first page by rank, the total and the facet counts over every hit, every
    /// row read as the node reads its own results; returns the total.
    pub fn search(&self, q: &SearchQuery) -> anyhow::Result<usize> {
        let mut args: Vec<String> = Vec::new();
        let mut hits = String::new();
        let text = q
            .text
            .as_deref()
            .map(match_expression)
            .filter(|m| !m.is_empty());
        let filters: Vec<(&str, Vec<String>)> = [
            ("kind", q.kinds.iter().map(|k| k.to_string()).collect()),
            ("category", q.categories.clone()),
            ("technology", q.technologies.clone()),
            ("sector", q.sectors.clone()),
            ("country", q.countries.clone()),
        ]
        .into_iter()
        .filter(|(_, v): &(&str, Vec<String>)| !v.is_empty())
        .collect();
        let placeholders = |n: usize| vec!["?"; n].join(", ");
        let mut with = String::new();
        let mut rest = &filters[..];
        if let Some(m) = &text {
            // The text match once, materialised; the filters then narrow it down (left to
            // itself, SQLite runs the match again for every candidate of a filter).
            with.push_str(
                "matched AS MATERIALIZED (SELECT rowid AS id, bm25(fts) AS score FROM fts WHERE fts MATCH ?), ",
            );
            args.push(m.clone());
            hits.push_str("SELECT id, score FROM matched WHERE 1");
        } else if let Some(((field, values), others)) = filters.split_first() {
            // Filters alone: the first one's index range, narrowed by the others; unranked,
            // as the node's index does.
            hits.push_str(&format!(
                "SELECT id, 0.0 AS score FROM terms WHERE field = ? AND value IN ({})",
                placeholders(values.len())
            ));
            args.push((*field).to_owned());
            args.extend(values.iter().cloned());
            rest = others;
        } else {
            // Nothing asked: every record (each has one kind).
            hits.push_str("SELECT id, 0.0 AS score FROM terms WHERE field = 'kind'");
        }
        for (field, values) in rest {
            hits.push_str(&format!(
                " AND id IN (SELECT id FROM terms WHERE field = ? AND value IN ({}))",
                placeholders(values.len())
            ));
            args.push((*field).to_owned());
            args.extend(values.iter().cloned());
        }
        let facets = FACET_NAMES
            .iter()
            .map(|f| format!("'{f}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH {with}hits AS MATERIALIZED ({hits}),
                  page AS (SELECT id FROM hits ORDER BY score, id LIMIT {PAGE})
             SELECT 'page', NULL, id FROM page
             UNION ALL SELECT 'total', NULL, count(*) FROM hits
             UNION ALL SELECT t.field, t.value, count(*) FROM hits JOIN terms t ON t.id = hits.id
                 WHERE t.field IN ({facets}) GROUP BY t.field, t.value"
        );
        let mut stmt = self.db.prepare_cached(&sql).context("FTS5 query")?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        let mut total = 0;
        while let Some(row) = rows.next()? {
            let what: String = row.get(0)?;
            let _value: Option<String> = row.get(1)?;
            let n: i64 = row.get(2)?;
            if what == "total" {
                total = usize::try_from(n).unwrap_or(0);
            }
        }
        Ok(total)
    }
}

/// An FTS5 MATCH expression for the words of `text`: every word required, words of five
/// letters or more also as a prefix; each word quoted, so no input is read as syntax.
fn match_expression(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            if w.chars().count() >= 5 {
                format!("\"{w}\"*")
            } else {
                format!("\"{w}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
