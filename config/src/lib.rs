//! hubcat-config: the node's configuration.
//!
//! Every option is declared once in [`OPTIONS`] (key, type, default, documentation). From that
//! one table come the defaults, the `HUBCAT_*` environment names, the type checks, the
//! commented example file (`config/hubcat.example.toml`, checked by a test) and the operator
//! reference. Precedence is written once, in [`resolve`]:
//! **CLI flag > environment (`HUBCAT_*`) > file > default**. Unknown keys in a file are an
//! error that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The file name of a node's configuration inside its data directory.
pub const CONFIG_FILE: &str = "hubcat.toml";

/// What type an option's value has, for parsing it from the environment and checking files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// A list of strings; comma separated in the environment.
    List,
}

/// One configuration option.
#[derive(Debug)]
pub struct OptionSpec {
    /// Dotted key, `section.name`.
    pub key: &'static str,
    pub kind: Kind,
    /// The default, as a TOML value literal.
    pub default: &'static str,
    pub doc: &'static str,
}

impl OptionSpec {
    /// The environment variable that sets this option: `HUBCAT_SECTION_NAME`.
    pub fn env_name(&self) -> String {
        format!("HUBCAT_{}", self.key.replace('.', "_").to_uppercase())
    }
}

/// Every option the node reads.
pub static OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "hub.name",
        kind: Kind::Str,
        default: "\"\"",
        doc: "Short name of this hub (e.g. \"HDS\"), shown to peers and in status output.",
    },
    OptionSpec {
        key: "hub.country",
        kind: Kind::Str,
        default: "\"\"",
        doc: "ISO 3166-1 alpha-2 country of this hub (e.g. \"SE\").",
    },
    OptionSpec {
        key: "api.listen",
        kind: Kind::Str,
        default: "\"127.0.0.1:7070\"",
        doc: "Address of the HTTP API. Loopback by default; reads are open on this address, writes need the bearer token from the data directory's api.token file.",
    },
    OptionSpec {
        key: "api.max_body_bytes",
        kind: Kind::Int,
        default: "4194304",
        doc: "Largest request body the API accepts, in bytes (larger bodies get 413).",
    },
    OptionSpec {
        key: "api.request_timeout_secs",
        kind: Kind::Int,
        default: "30",
        doc: "Seconds a request may take before the API gives up on it with 503 (`timeout`).",
    },
    OptionSpec {
        key: "api.max_concurrent_requests",
        kind: Kind::Int,
        default: "256",
        doc: "Requests the API works on at once; more get 503 (`overloaded`) with Retry-After at once rather than queueing.",
    },
    OptionSpec {
        key: "api.read_rate_per_sec",
        kind: Kind::Int,
        default: "50",
        doc: "Read requests per second one client address may make (sustained); more get 429 (`rate_limited`) with Retry-After. Requests with the write token, and /healthz, /readyz and /metrics, are not limited. 0 turns the limit off.",
    },
    OptionSpec {
        key: "api.read_burst",
        kind: Kind::Int,
        default: "100",
        doc: "Read requests one client address may make at once above its sustained rate.",
    },
    OptionSpec {
        key: "p2p.listen",
        kind: Kind::List,
        default: "[\"/ip4/0.0.0.0/tcp/7071\", \"/ip4/0.0.0.0/udp/7071/quic-v1\"]",
        doc: "libp2p listen addresses (multiaddrs). Port 0 picks a free port.",
    },
    OptionSpec {
        key: "p2p.bootstrap",
        kind: Kind::List,
        default: "[]",
        doc: "Peers to dial at start, as multiaddrs ending in /p2p/<peer-id> (e.g. /dns4/hub.example.org/tcp/7071/p2p/12D3KooW…). Without p2p.bootstrap_unpinned, an address without /p2p/ is refused.",
    },
    OptionSpec {
        key: "p2p.bootstrap_unpinned",
        kind: Kind::Bool,
        default: "false",
        doc: "Also accept p2p.bootstrap addresses without /p2p/<peer-id> (e.g. /dns4/hub2/tcp/7071): the node dials them and learns the peer id from the peer's own key in the Noise handshake. Records stay safe (every change is verified against its hub's signature), but whoever answers at that address becomes a peer, so use this only on a network you control, such as a compose or cluster network; across the internet, pin peer ids.",
    },
    OptionSpec {
        key: "p2p.federation",
        kind: Kind::Str,
        default: "\"hubcat\"",
        doc: "Federation name: part of every gossip topic and protocol name, so two federations on one network never mix.",
    },
    OptionSpec {
        key: "p2p.mdns",
        kind: Kind::Bool,
        default: "false",
        doc: "Discover peers on the local network with mDNS.",
    },
    OptionSpec {
        key: "p2p.max_peers",
        kind: Kind::Int,
        default: "50",
        doc: "Most peers this node keeps connections with (bootstrap peers always count).",
    },
    OptionSpec {
        key: "p2p.max_message_bytes",
        kind: Kind::Int,
        default: "1048576",
        doc: "Largest gossip message or sync request accepted from a peer, in bytes; larger ones are dropped and counted against the peer.",
    },
    OptionSpec {
        key: "sync.interval_secs",
        kind: Kind::Int,
        default: "30",
        doc: "Seconds between anti-entropy rounds with a random connected peer.",
    },
    OptionSpec {
        key: "sync.max_response_bytes",
        kind: Kind::Int,
        default: "4194304",
        doc: "Most change bytes one sync response carries; a peer that is further behind asks again for the rest.",
    },
    OptionSpec {
        key: "sync.timeout_secs",
        kind: Kind::Int,
        default: "30",
        doc: "Seconds before an unanswered sync request to a peer is abandoned.",
    },
    OptionSpec {
        key: "catalogue.stale_after_days",
        kind: Kind::Int,
        default: "365",
        doc: "A record not confirmed by its publisher for this many days is shown as stale.",
    },
    OptionSpec {
        key: "log.filter",
        kind: Kind::Str,
        default: "\"info\"",
        doc: "Log filter (tracing syntax, e.g. \"info,hubcat_node=debug\"); RUST_LOG overrides it.",
    },
    OptionSpec {
        key: "log.format",
        kind: Kind::Str,
        default: "\"human\"",
        doc: "Log format: \"human\" or \"json\" (one JSON object per line, for log shippers).",
    },
];

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hub: HubSection,
    pub api: ApiSection,
    pub p2p: P2pSection,
    pub sync: SyncSection,
    pub catalogue: CatalogueSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    pub name: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub request_timeout_secs: u64,
    pub max_concurrent_requests: u64,
    pub read_rate_per_sec: u64,
    pub read_burst: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub bootstrap_unpinned: bool,
    pub federation: String,
    pub mdns: bool,
    pub max_peers: u64,
    pub max_message_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    pub interval_secs: u64,
    pub max_response_bytes: u64,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSection {
    pub stale_after_days: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: not valid TOML: {detail}")]
    Syntax { source_name: String, detail: String },
    #[error("{source_name}: unknown key `{key}`; valid keys: {valid}")]
    UnknownKey {
        source_name: String,
        key: String,
        valid: String,
    },
    #[error("{source_name}: `{key}` {detail}")]
    BadValue {
        source_name: String,
        key: String,
        detail: String,
    },
}

/// Where a value came from, for error messages.
fn valid_keys() -> String {
    OPTIONS.iter().map(|o| o.key).collect::<Vec<_>>().join(", ")
}

fn spec(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.key == key)
}

fn type_ok(kind: Kind, value: &toml::Value) -> bool {
    match (kind, value) {
        (Kind::Str, toml::Value::String(_)) => true,
        (Kind::Int, toml::Value::Integer(i)) => *i >= 0,
        (Kind::Bool, toml::Value::Boolean(_)) => true,
        (Kind::List, toml::Value::Array(a)) => a.iter().all(|v| v.is_str()),
        _ => false,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "must be a string",
        Kind::Int => "must be a non-negative integer",
        Kind::Bool => "must be true or false",
        Kind::List => "must be a list of strings",
    }
}

/// Set `key` in the flat map after checking it exists and has the right type.
fn set(
    flat: &mut BTreeMap<String, toml::Value>,
    source_name: &str,
    key: &str,
    value: toml::Value,
) -> Result<(), ConfigError> {
    let spec = spec(key).ok_or_else(|| ConfigError::UnknownKey {
        source_name: source_name.to_owned(),
        key: key.to_owned(),
        valid: valid_keys(),
    })?;
    if !type_ok(spec.kind, &value) {
        return Err(ConfigError::BadValue {
            source_name: source_name.to_owned(),
            key: key.to_owned(),
            detail: format!("{}, got {value}", kind_name(spec.kind)),
        });
    }
    flat.insert(key.to_owned(), value);
    Ok(())
}

/// Flatten a parsed file into dotted keys.
fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other)),
        }
    }
}

/// Parse an environment value for an option of `kind`.
fn parse_env(kind: Kind, raw: &str) -> Result<toml::Value, String> {
    match kind {
        Kind::Str => Ok(toml::Value::String(raw.to_owned())),
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|i| *i >= 0)
            .map(toml::Value::Integer)
            .ok_or_else(|| format!("must be a non-negative integer, got `{raw}`")),
        Kind::Bool => match raw.trim() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("must be true or false, got `{raw}`")),
        },
        Kind::List => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )),
    }
}

/// The inputs [`resolve`] layers, lowest precedence first after the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources<'a> {
    /// The config file's text and its name for messages.
    pub file: Option<(&'a str, &'a str)>,
    /// The process environment (only `HUBCAT_*` names are read).
    pub env: BTreeMap<String, String>,
    /// Values given as command-line flags, by dotted key.
    pub flags: Vec<(&'static str, toml::Value)>,
}

/// The resolved configuration, plus environment names that looked like options but are not.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub ignored_env: Vec<String>,
}

/// Names read from the environment by the binary itself rather than as options.
pub const NON_OPTION_ENV: &[&str] = &["HUBCAT_DATA_DIR", "HUBCAT_CONFIG"];

/// Resolve the configuration: flag > environment > file > default. The one place that
/// decides precedence.
pub fn resolve(sources: &Sources<'_>) -> Result<Resolved, ConfigError> {
    let mut flat: BTreeMap<String, toml::Value> = BTreeMap::new();
    for o in OPTIONS {
        let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", o.default))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| ConfigError::BadValue {
                source_name: "built-in defaults".into(),
                key: o.key.into(),
                detail: "has an unparsable default".into(),
            })?;
        flat.insert(o.key.to_owned(), v);
    }

    if let Some((text, name)) = sources.file {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            source_name: name.to_owned(),
            detail: e.to_string(),
        })?;
        let mut entries = Vec::new();
        flatten("", table, &mut entries);
        for (k, v) in entries {
            set(&mut flat, name, &k, v)?;
        }
    }

    let mut ignored_env = Vec::new();
    for (name, raw) in &sources.env {
        if !name.starts_with("HUBCAT_") || NON_OPTION_ENV.contains(&name.as_str()) {
            continue;
        }
        match OPTIONS.iter().find(|o| o.env_name() == *name) {
            Some(o) => {
                let v = parse_env(o.kind, raw).map_err(|detail| ConfigError::BadValue {
                    source_name: format!("environment {name}"),
                    key: o.key.to_owned(),
                    detail,
                })?;
                set(&mut flat, &format!("environment {name}"), o.key, v)?;
            }
            None => ignored_env.push(name.clone()),
        }
    }

    for (key, v) in &sources.flags {
        set(&mut flat, "command line", key, v.clone())?;
    }

    let mut root = toml::Table::new();
    for (key, v) in flat {
        let (section, name) = key.split_once('.').unwrap_or(("", key.as_str()));
        root.entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .map(|t| t.insert(name.to_owned(), v));
    }
    let config: Config = toml::Value::Table(root)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::BadValue {
            source_name: "configuration".into(),
            key: "(value)".into(),
            detail: e.message().to_owned(),
        })?;
    validate(&config)?;
    Ok(Resolved {
        config,
        ignored_env,
    })
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    let bad = |key: &str, detail: String| ConfigError::BadValue {
        source_name: "configuration".into(),
        key: key.into(),
        detail,
    };
    for (key, list) in [
        ("p2p.listen", &c.p2p.listen),
        ("p2p.bootstrap", &c.p2p.bootstrap),
    ] {
        for addr in list {
            if !addr.starts_with('/') {
                return Err(bad(
                    key,
                    format!(
                        "`{addr}` is not a multiaddr (e.g. /ip4/10.0.0.2/tcp/7071/p2p/12D3KooW…)"
                    ),
                ));
            }
        }
    }
    if !c.p2p.bootstrap_unpinned {
        if let Some(addr) = c.p2p.bootstrap.iter().find(|a| !a.contains("/p2p/")) {
            return Err(bad(
                "p2p.bootstrap",
                format!(
                    "`{addr}` does not end in /p2p/<peer-id> (the peer's id: `hubcat key show` on that hub); \
                     on a network you control, set p2p.bootstrap_unpinned = true to learn it on connect"
                ),
            ));
        }
    }
    let fed_ok = !c.p2p.federation.is_empty()
        && c.p2p.federation.len() <= 64
        && c.p2p
            .federation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !fed_ok {
        return Err(bad(
            "p2p.federation",
            format!(
                "`{}` must be 1-64 characters of a-z A-Z 0-9 - _ .",
                c.p2p.federation
            ),
        ));
    }
    for (key, value, min) in [
        ("sync.interval_secs", c.sync.interval_secs, 1),
        ("sync.timeout_secs", c.sync.timeout_secs, 1),
        ("api.request_timeout_secs", c.api.request_timeout_secs, 1),
        (
            "api.max_concurrent_requests",
            c.api.max_concurrent_requests,
            1,
        ),
        ("api.read_burst", c.api.read_burst, 1),
        (
            "sync.max_response_bytes",
            c.sync.max_response_bytes,
            64 * 1024,
        ),
        ("p2p.max_message_bytes", c.p2p.max_message_bytes, 64 * 1024),
        ("p2p.max_peers", c.p2p.max_peers, 1),
        (
            "catalogue.stale_after_days",
            c.catalogue.stale_after_days,
            1,
        ),
    ] {
        if value < min {
            return Err(bad(
                key,
                format!("{value} is too small: must be at least {min}"),
            ));
        }
    }
    if c.api.max_body_bytes < 1024 {
        return Err(bad("api.max_body_bytes", "must be at least 1024".into()));
    }
    Ok(())
}

/// The commented example configuration, generated from [`OPTIONS`].
pub fn example_toml() -> String {
    let mut out = String::from(
        "# hubcat node configuration: the file `hubcat.toml` in the node's data directory.\n\
         # Every option is shown with its default. Precedence: command-line flag > environment\n\
         # variable > this file > default. Unknown keys are refused.\n\
         # Generated from the config crate (hubcat-config); `hubcat config example` prints it.\n",
    );
    let mut section = "";
    for o in OPTIONS {
        let (s, name) = o.key.split_once('.').unwrap_or(("", o.key));
        if s != section {
            let gap = if section.is_empty() { "\n" } else { "" };
            out.push_str(&format!("{gap}[{s}]\n"));
            section = s;
        }
        for line in wrap(o.doc, 92) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("# environment: {}\n", o.env_name()));
        out.push_str(&format!("{name} = {}\n\n", o.default));
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The operator reference as a Markdown table, generated from [`OPTIONS`].
pub fn reference_markdown() -> String {
    let mut out = String::from("| key | environment | default | meaning |\n|---|---|---|---|\n");
    for o in OPTIONS {
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            o.key,
            o.env_name(),
            o.default,
            o.doc.replace('|', "\\|")
        ));
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map(|l| l.len()).unwrap_or(0);
        if last > 0 && last + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_resolve() {
        let r = resolve(&Sources::default()).expect("defaults are valid");
        assert_eq!(r.config.api.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(r.config.log.format, LogFormat::Human);
        assert!(r.config.p2p.bootstrap.is_empty());
    }

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        let file = "[api]\nlisten = \"127.0.0.1:1000\"\n[hub]\nname = \"HDS\"\n[sync]\ninterval_secs = 5\n";
        let mut sources = Sources {
            file: Some((file, "hubcat.toml")),
            env: env(&[
                ("HUBCAT_API_LISTEN", "127.0.0.1:2000"),
                ("HUBCAT_SYNC_INTERVAL_SECS", "7"),
            ]),
            flags: vec![("api.listen", toml::Value::String("127.0.0.1:3000".into()))],
        };
        let c = resolve(&sources).expect("valid").config;
        assert_eq!(c.api.listen.port(), 3000, "flag wins");
        assert_eq!(c.sync.interval_secs, 7, "env beats file");
        assert_eq!(c.hub.name, "HDS", "file beats default");
        sources.flags.clear();
        assert_eq!(
            resolve(&sources).expect("valid").config.api.listen.port(),
            2000
        );
        sources.env.clear();
        assert_eq!(
            resolve(&sources).expect("valid").config.api.listen.port(),
            1000
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = resolve(&Sources {
            file: Some(("[api]\nlisen = \"x\"\n", "hubcat.toml")),
            ..Default::default()
        })
        .expect_err("unknown key");
        assert!(err.to_string().contains("`api.lisen`"), "{err}");

        let err = resolve(&Sources {
            file: Some(("[sync]\ninterval_secs = \"often\"\n", "hubcat.toml")),
            ..Default::default()
        })
        .expect_err("bad type");
        assert!(err.to_string().contains("sync.interval_secs"), "{err}");

        let err = resolve(&Sources {
            env: env(&[("HUBCAT_P2P_MDNS", "perhaps")]),
            ..Default::default()
        })
        .expect_err("bad bool");
        assert!(err.to_string().contains("HUBCAT_P2P_MDNS"), "{err}");

        let err = resolve(&Sources {
            env: env(&[("HUBCAT_API_LISTEN", "everywhere")]),
            ..Default::default()
        })
        .expect_err("bad address");
        assert!(
            err.to_string().contains("api") || err.to_string().contains("address"),
            "{err}"
        );
    }

    #[test]
    fn env_lists_split_on_commas_and_strays_are_reported() {
        let r = resolve(&Sources {
            env: env(&[
                (
                    "HUBCAT_P2P_BOOTSTRAP",
                    "/ip4/127.0.0.1/tcp/1/p2p/x, /ip4/127.0.0.1/tcp/2/p2p/y",
                ),
                ("HUBCAT_DATA_DIR", "/var/lib/hubcat"),
                ("HUBCAT_API_LISTN", "oops"),
            ]),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(r.config.p2p.bootstrap.len(), 2);
        assert_eq!(r.ignored_env, vec!["HUBCAT_API_LISTN".to_string()]);
    }

    #[test]
    fn bootstrap_without_peer_id_needs_the_explicit_option() {
        let unpinned = env(&[("HUBCAT_P2P_BOOTSTRAP", "/dns4/hub2/tcp/7071")]);
        let err = resolve(&Sources {
            env: unpinned.clone(),
            ..Default::default()
        })
        .expect_err("refused without the option");
        assert!(err.to_string().contains("p2p.bootstrap_unpinned"), "{err}");
        let mut allowed = unpinned;
        allowed.insert("HUBCAT_P2P_BOOTSTRAP_UNPINNED".into(), "true".into());
        let r = resolve(&Sources {
            env: allowed,
            ..Default::default()
        })
        .expect("accepted with the option");
        assert!(r.config.p2p.bootstrap_unpinned);
        assert_eq!(
            r.config.p2p.bootstrap,
            vec!["/dns4/hub2/tcp/7071".to_string()]
        );
    }

    /// The operator guide's configuration reference is this crate's, not a copy:
    /// `deploy/gen-config-reference.sh` (`HUBCAT_WRITE_REFERENCE=1`) regenerates it.
    #[test]
    fn deploy_readme_reference_is_the_generated_one() {
        const START: &str = "<!-- config-reference:start -->\n";
        const END: &str = "<!-- config-reference:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/README.md");
        let text = std::fs::read_to_string(path).expect("deploy/README.md");
        let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
            panic!("deploy/README.md lacks the config-reference markers");
        };
        let body_start = start + START.len();
        assert!(body_start <= end, "config-reference markers out of order");
        let wanted = reference_markdown();
        if std::env::var_os("HUBCAT_WRITE_REFERENCE").is_some() {
            let updated = format!("{}{wanted}{}", &text[..body_start], &text[end..]);
            std::fs::write(path, updated).expect("write deploy/README.md");
            return;
        }
        assert_eq!(
            &text[body_start..end],
            wanted,
            "deploy/README.md's configuration reference is out of date: run deploy/gen-config-reference.sh"
        );
    }

    /// `HUBCAT_WRITE_EXAMPLE=1 cargo test -p hubcat-config` regenerates the committed example.
    #[test]
    fn the_committed_example_is_the_generated_one_and_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/hubcat.example.toml");
        if std::env::var_os("HUBCAT_WRITE_EXAMPLE").is_some() {
            std::fs::write(path, example_toml()).expect("write example");
        }
        let committed = std::fs::read_to_string(path).expect("config/hubcat.example.toml");
        assert_eq!(
            committed,
            example_toml(),
            "regenerate with HUBCAT_WRITE_EXAMPLE=1"
        );
        let r = resolve(&Sources {
            file: Some((&committed, "hubcat.example.toml")),
            ..Default::default()
        })
        .expect("example is valid");
        assert_eq!(
            r.config,
            resolve(&Sources::default()).expect("defaults").config
        );
    }
}
