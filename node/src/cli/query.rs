//! Query commands: `search`, `gaps`, `duplicates`, `match`, `confirm`, `reindex`. Each asks the
//! running node over its API and prints a table (or the API's JSON with `--json`).

use clap::Args;
use serde_json::Value;

use super::{print_json, urlencode, Client, DataDirArg};

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Free text in any language (stemmed per language).
    pub query: Option<String>,
    /// profile, service or practice (comma-separated for several).
    #[arg(long)]
    pub kind: Option<String>,
    /// EDIH category slug, e.g. test-before-invest.
    #[arg(long)]
    pub category: Option<String>,
    /// Technology slug, e.g. artificial-intelligence.
    #[arg(long)]
    pub technology: Option<String>,
    /// Sector slug, e.g. health-care.
    #[arg(long)]
    pub sector: Option<String>,
    /// ISO 3166-1 country (records serving it or a region in it).
    #[arg(long)]
    pub country: Option<String>,
    /// NUTS region; matches its sub-regions too (SE1 matches SE11).
    #[arg(long)]
    pub region: Option<String>,
    /// ISO 639-1 language the record is written in or served in.
    #[arg(long)]
    pub language: Option<String>,
    /// Practice maturity: idea, pilot, deployed, scaled, retired.
    #[arg(long)]
    pub maturity: Option<String>,
    /// Practice type, e.g. app or complex-solution.
    #[arg(long)]
    pub practice_type: Option<String>,
    /// Hub type of the publishing hub, e.g. edih.
    #[arg(long)]
    pub hub_type: Option<String>,
    /// A publisher's did.
    #[arg(long)]
    pub publisher: Option<String>,
    /// true or false.
    #[arg(long)]
    pub open_to_twinning: Option<String>,
    /// true: only records confirmed recently; false: only stale ones.
    #[arg(long)]
    pub fresh: Option<String>,
    /// Your language: its records rank first and titles show in it.
    #[arg(long)]
    pub lang: Option<String>,
    #[arg(long)]
    pub page: Option<String>,
    #[arg(long)]
    pub per_page: Option<String>,
}

#[derive(Args, Debug)]
pub struct GapsArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// country or region (NUTS).
    #[arg(long, default_value = "country")]
    pub by: String,
    /// Only this category (comma-separated for several).
    #[arg(long)]
    pub category: Option<String>,
    /// Count only services with this technology (comma-separated for several).
    #[arg(long)]
    pub technology: Option<String>,
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// What you need, in any language.
    pub need: String,
    /// Your country (ISO 3166-1).
    #[arg(long)]
    pub country: String,
    /// Your NUTS region.
    #[arg(long)]
    pub region: Option<String>,
    /// The language you want to be served in (ISO 639-1).
    #[arg(long)]
    pub language: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    /// Technology slug (repeatable).
    #[arg(long = "technology")]
    pub technologies: Vec<String>,
    /// Audience slug, e.g. sme (repeatable).
    #[arg(long)]
    pub audience: Vec<String>,
    /// Your technology readiness level, 1-9.
    #[arg(long)]
    pub trl: Option<u8>,
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The record to confirm (this hub's own).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Confirm every record this hub publishes.
    #[arg(long)]
    pub all: bool,
}

/// Print rows under headers, columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - c.chars().count() + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        s.chars().take(n - 1).collect::<String>() + "…"
    } else {
        s.to_owned()
    }
}

fn short_id(id: &str) -> String {
    match id.split_once('@') {
        Some((slot, publ)) => format!("{slot}@{}", publ.chars().take(12).collect::<String>()),
        None => id.to_owned(),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn query_string(pairs: &[(&str, &Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn search(a: SearchArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&a.dir.data_dir)?;
    let qs = query_string(&[
        ("q", &a.query),
        ("kind", &a.kind),
        ("category", &a.category),
        ("technology", &a.technology),
        ("sector", &a.sector),
        ("country", &a.country),
        ("region", &a.region),
        ("language", &a.language),
        ("maturity", &a.maturity),
        ("practice_type", &a.practice_type),
        ("hub_type", &a.hub_type),
        ("publisher", &a.publisher),
        ("open_to_twinning", &a.open_to_twinning),
        ("fresh", &a.fresh),
        ("lang", &a.lang),
        ("page", &a.page),
        ("per_page", &a.per_page),
    ]);
    let v = client.get(&format!("/v1/search?{qs}")).await?;
    if json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v["results"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            let what = r["category"]
                .as_str()
                .or(r["practice_type"].as_str())
                .or(r["hub_type"].as_str())
                .unwrap_or("");
            let publisher = r["publisher"]["name"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| cut(str_of(&r["publisher"], "did"), 20));
            let confirmed = str_of(r, "last_confirmed")
                .get(..10)
                .unwrap_or("")
                .to_owned();
            let stale = if r["stale"].as_bool() == Some(true) {
                " STALE"
            } else {
                ""
            };
            vec![
                short_id(str_of(r, "id")),
                str_of(r, "kind").to_owned(),
                what.to_owned(),
                cut(str_of(r, "title"), 50),
                publisher,
                format!("{confirmed}{stale}"),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "TYPE", "TITLE", "PUBLISHER", "CONFIRMED"],
        &rows,
    );
    println!(
        "{} results (page {} of {})",
        v["total"],
        v["page"],
        v["pages"].as_u64().unwrap_or(0).max(1)
    );
    for facet in crate::search::FACET_NAMES {
        let counts: Vec<String> = v["facets"][facet]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .take(8)
            .map(|c| format!("{} {}", str_of(c, "value"), c["count"]))
            .collect();
        if !counts.is_empty() {
            println!("  {facet}: {}", counts.join(", "));
        }
    }
    Ok(())
}

pub async fn gaps(a: GapsArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&a.dir.data_dir)?;
    let qs = query_string(&[
        ("by", &Some(a.by.clone())),
        ("category", &a.category),
        ("technology", &a.technology),
    ]);
    let v = client.get(&format!("/v1/gaps?{qs}")).await?;
    if json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let categories: Vec<&str> = v["categories"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let hub_areas: Vec<&str> = v["hub_areas"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut headers = vec![if a.by == "region" {
        "REGION"
    } else {
        "COUNTRY"
    }];
    headers.extend(categories.iter().copied());
    let rows: Vec<Vec<String>> = v["areas"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .map(|area| {
            let mut row = vec![if hub_areas.contains(&area) {
                area.to_owned()
            } else {
                format!("{area} (no hub)")
            }];
            for c in &categories {
                let cell = &v["matrix"][*c][area];
                let services = cell["services"].as_u64().unwrap_or(0);
                row.push(if services == 0 {
                    if hub_areas.contains(&area) {
                        "— gap".to_owned()
                    } else {
                        "·".to_owned()
                    }
                } else {
                    format!("{services} ({} hubs)", cell["hubs"])
                });
            }
            row
        })
        .collect();
    table(&headers, &rows);
    println!(
        "{} empty cells where hubs are; cells are services (hubs offering them)",
        v["empty"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}

pub async fn duplicates(dir: DataDirArg, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&dir.data_dir)?;
    let v = client.get("/v1/duplicates").await?;
    if json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let groups = v["groups"].as_array().unwrap_or(&empty);
    if groups.is_empty() {
        println!("no profiles of different publishers look alike");
        return Ok(());
    }
    for g in groups {
        println!("same {}: {}", str_of(g, "reason"), str_of(g, "key"));
        for p in g["profiles"].as_array().unwrap_or(&empty) {
            println!(
                "    {:<12} {:<2}  {}  {}",
                cut(str_of(p, "name"), 12),
                str_of(p, "country"),
                cut(str_of(p, "title"), 50),
                str_of(p, "publisher")
            );
        }
    }
    println!("{} groups", groups.len());
    Ok(())
}

pub async fn match_services(a: MatchArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&a.dir.data_dir)?;
    let body = serde_json::json!({
        "need": a.need,
        "country": a.country,
        "region": a.region,
        "language": a.language,
        "category": a.category,
        "technologies": a.technologies,
        "audience": a.audience,
        "trl": a.trl,
        "limit": a.limit,
    });
    let v = client
        .send(
            reqwest::Method::POST,
            "/v1/match",
            Some((serde_json::to_vec(&body)?, false)),
            false,
        )
        .await?;
    if json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let results = v["results"].as_array().unwrap_or(&empty);
    if results.is_empty() {
        println!("no service matches that need");
    }
    for (i, r) in results.iter().enumerate() {
        println!(
            "{:>2}. {:.2}  {}  — {} ({})",
            i + 1,
            r["score"].as_f64().unwrap_or(0.0),
            cut(str_of(r, "title"), 60),
            r["publisher"]["name"].as_str().unwrap_or("?"),
            short_id(str_of(r, "id"))
        );
        for reason in r["reasons"].as_array().unwrap_or(&empty) {
            println!("       · {}", reason.as_str().unwrap_or(""));
        }
    }
    Ok(())
}

pub async fn confirm(a: ConfirmArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&a.dir.data_dir)?;
    let v = match &a.id {
        Some(id) if !a.all => {
            client
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/records/{}/confirm", urlencode(id)),
                    None,
                    true,
                )
                .await?
        }
        _ => {
            client
                .send(reqwest::Method::POST, "/v1/confirm", None, true)
                .await?
        }
    };
    if json {
        return print_json(&v);
    }
    if let Some(ids) = v["confirmed"].as_array() {
        for id in ids {
            println!("confirmed {}", id.as_str().unwrap_or(""));
        }
        println!("{} records confirmed", ids.len());
    } else {
        println!(
            "confirmed {} (last_confirmed {})",
            str_of(&v, "id"),
            str_of(&v["record"], "last_confirmed")
        );
    }
    Ok(())
}

pub async fn reindex(dir: DataDirArg, json: bool) -> anyhow::Result<()> {
    let client = Client::for_dir(&dir.data_dir)?;
    let v = client
        .send(reqwest::Method::POST, "/v1/reindex", None, true)
        .await?;
    if json {
        return print_json(&v);
    }
    println!(
        "search index rebuilt: {} records in {} ms",
        v["indexed"], v["took_ms"]
    );
    Ok(())
}
