//! The benchmarks behind `hubcat-bench`, one module per subcommand, plus what they share.
//!
//! - [`corpus`]: realistic publishers and records (text from the EC EDIH catalogue export in
//!   `shared/data` when present, generated otherwise).
//! - [`ingest`]: the ingest pipeline stage by stage, then end to end through the engine.
//! - [`net`]: the federation layer on loopback — propagate, catchup, diff, idle.
//! - [`search`]: the search index — build (reindex) time, query latency per class, memory.
//! - [`import`]: bulk import through `hubcat import` → API → engine, rows per second.
//! - [`adversary`]: a federation under attack by hostile peers: what got in, who was
//!   graylisted, honest query latency quiet and under attack.
//!
//! The ingest bench runs on one thread (the node ingests on one core; sled's own flusher thread
//! is the only other one) and reports rates in records per second. The network benches run
//! real in-process nodes, each on its own two-thread runtime.

pub mod adversary;
pub mod corpus;
pub mod fts5;
pub mod import;
pub mod ingest;
pub mod net;
pub mod search;

use std::time::{Duration, Instant};

use serde::Serialize;

/// Run `f` once and return its result with the wall time it took.
pub fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed()))
}

/// CPU time this process has used so far (user + system, every thread), from
/// `/proc/self/stat`; `None` where that is not available. Unlike wall time it barely moves
/// when other work shares the cores, so it tells a change's effect on a busy machine.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the node targets.
    Some(Duration::from_millis(ticks * 10))
}

/// Records per second for `n` records in `elapsed` (0 when nothing was timed).
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The machine a result was measured on: results from different machines do not compare.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub os: &'static str,
    pub arch: &'static str,
    /// `release` or `debug`: debug numbers are meaningless for the targets.
    pub build: &'static str,
    /// The curve arithmetic ed25519 runs on here: `avx512ifma` where the build has
    /// curve25519-dalek's AVX-512 backend (`.cargo/config.toml`) and the CPU the instructions,
    /// else `avx2`, else `serial`, unless the build forces `serial` or `fiat` (what
    /// curve25519-dalek picks at run time).
    pub ed25519_backend: &'static str,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpus,
            cpu_model,
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            ed25519_backend: ed25519_backend(),
        }
    }
}

fn ed25519_backend() -> &'static str {
    if cfg!(curve25519_dalek_backend = "fiat") {
        return "fiat";
    }
    if cfg!(curve25519_dalek_backend = "serial") {
        return "serial";
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(curve25519_dalek_backend = "avx512")
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "serial"
}

/// Where human-readable output goes: stdout normally, stderr when stdout carries JSON.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    pub json: bool,
}

impl Console {
    pub fn say(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// Progress notes always go to stderr, so they never mix with a table or JSON on stdout.
    pub fn progress(&self, line: &str) {
        eprintln!("  … {line}");
    }
}

/// A plain text table: first column left-aligned, the others right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if c == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `123456.7` → `123 457`: thin grouping so rates read at a glance.
pub fn group(value: f64) -> String {
    let n = value.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A JSON number rounded to `places` decimals (keeps the output readable and diffable).
pub fn round(value: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (value * f).round() / f
}
