//! The `hubcat` command line. Commands that need the node talk to it over its HTTP API (the
//! running node holds the store's lock); `init`, `key show`, `verify` and `config` work offline.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};
use hubcat_protocol::bundle::{self, Bundle};
use serde_json::Value;

use crate::datadir::{DataDir, InitOptions};

mod query;

#[derive(Parser, Debug)]
#[command(
    name = "hubcat",
    version,
    about = "A federated catalogue node for innovation hubs"
)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// The node's data directory.
    #[arg(long, env = "HUBCAT_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Addresses given on the command line (`init` writes them to the config, `run` overrides it).
#[derive(Args, Debug, Clone, Default)]
pub struct AddrArgs {
    /// HTTP API address, HOST:PORT (api.listen; default 127.0.0.1:7070).
    #[arg(long)]
    pub api: Option<String>,
    /// libp2p listen multiaddr (p2p.listen; repeatable).
    #[arg(long)]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr ending in /p2p/<peer-id> (p2p.bootstrap; repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a hub: key (0600), API token (0600) and config file. Prints the hub's did.
    Init {
        #[command(flatten)]
        dir: DataDirArg,
        /// Short name of the hub, e.g. HDS.
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 country code, e.g. SE.
        #[arg(long)]
        country: String,
        #[command(flatten)]
        addrs: AddrArgs,
        /// Join the federation of this genesis file (its founder signatures must all verify).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Take up an existing hub that lost its key: the new key signs for this did once the
        /// federation's members recover it (`hubcat federation recover`).
        #[arg(long, value_name = "DID")]
        recover: Option<String>,
    },
    /// Run the node until SIGINT or SIGTERM.
    Run {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        addrs: AddrArgs,
        /// Override log.format: human or json.
        #[arg(long)]
        log_format: Option<String>,
        /// Read the configuration from this file instead of DIR/hubcat.toml.
        #[arg(long, env = "HUBCAT_CONFIG")]
        config: Option<PathBuf>,
        /// Create the hub first if the directory holds none (name and country from
        /// hub.name / hub.country, e.g. HUBCAT_HUB_NAME, HUBCAT_HUB_COUNTRY). An existing hub
        /// is never touched: safe on every start of a container.
        #[arg(long)]
        init_if_missing: bool,
    },
    /// Check the running node: exit 0 when it is ready (/readyz), 1 with the reason when not.
    /// With --live, only whether it answers (/healthz). Used as the container healthcheck.
    Health {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        live: bool,
    },
    /// Write a consistent, verified backup of the catalogue to OUT (works while the node runs;
    /// holds no secret: back up hub.key and api.token separately).
    Backup {
        #[command(flatten)]
        dir: DataDirArg,
        out: PathBuf,
    },
    /// Replace the node's store with a backup (node stopped). The node then signs with a new
    /// Automerge actor; the old store is kept beside the new one.
    Restore {
        #[command(flatten)]
        dir: DataDirArg,
        file: PathBuf,
    },
    /// Sign and publish a record (JSON or TOML file, `-` for standard input). Prints its id.
    Publish {
        #[command(flatten)]
        dir: DataDirArg,
        file: String,
    },
    /// Withdraw one of this hub's records (a signed delete).
    Withdraw {
        #[command(flatten)]
        dir: DataDirArg,
        id: String,
    },
    /// Show one record with its provenance.
    Show {
        #[command(flatten)]
        dir: DataDirArg,
        id: String,
    },
    /// List records of the federated catalogue.
    List {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// A publisher's did.
        #[arg(long)]
        publisher: Option<String>,
    },
    /// The node's identity, record counts, catalogue digest and last sync per peer.
    Status {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Peers: id, hub did and name, addresses, connected since, last sync, bytes in/out.
    Peers {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Export the federated catalogue (or a filtered part) to standard output.
    Export {
        #[command(flatten)]
        dir: DataDirArg,
        /// bundle: every record with its signed changes and publisher keys (verifiable
        /// offline); json: the records with provenance; csv: the record layout's columns;
        /// dcat-ap: DCAT-AP 3 JSON-LD. json and csv import again.
        #[arg(long, default_value = "bundle")]
        format: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// A publisher's did.
        #[arg(long)]
        publisher: Option<String>,
    },
    /// Publish every row of a JSON array, JSON lines or CSV file as its own signed record;
    /// refused rows are reported with their row number, field and reason.
    Import(crate::import::ImportArgs),
    /// Check every signature of an exported bundle offline (no node needed).
    Verify { file: PathBuf },
    /// Key commands.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Federation: create, sign and join a genesis; endorse, suspend and reinstate hubs; list
    /// the members.
    Federation {
        #[command(subcommand)]
        command: crate::federation::FederationCommand,
    },
    /// Configuration reference.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a demo on this machine with records about real hubs, and print how to query it.
    Demo(crate::demo::DemoArgs),
    /// Search the whole federated catalogue: text in any language, filters, facets.
    Search(Box<query::SearchArgs>),
    /// Gap analysis: services and hubs per category and country (or NUTS region).
    Gaps(query::GapsArgs),
    /// Profiles of different publishers that look like the same organisation.
    Duplicates {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Services for a need, ranked, with why each matched.
    Match(Box<query::MatchArgs>),
    /// Confirm this hub's record (or --all) is still true: re-signed with a new last_confirmed.
    Confirm(query::ConfirmArgs),
    /// Rebuild the running node's search index from its catalogue.
    Reindex {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// The hub's did, public key and libp2p peer id (works with the node stopped).
    Show {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Hand the hub's signing over to a new key (as a member of a genesis federation): the
    /// running node makes the key, signs the rotation with the current one and signs on with
    /// the new one. Changes signed with the old key afterwards are refused everywhere.
    Rotate {
        #[command(flatten)]
        dir: DataDirArg,
        /// Why (kept in the signed rotation).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the commented example configuration with every option and its default.
    Example,
    /// Print the option reference as a Markdown table.
    Reference,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("HUBCAT_"))
        .collect()
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init {
            dir,
            name,
            country,
            addrs,
            genesis,
            recover,
        } => {
            let dd = DataDir::new(&dir.data_dir);
            // Checked before anything is created: a refused genesis leaves no hub behind.
            let genesis = genesis.map(|g| crate::federation::check(&g)).transpose()?;
            let recover = recover
                .map(|d| {
                    hubcat_protocol::HubId::from_did(&d)
                        .map_err(|e| anyhow!("--recover: `{d}` is not a hub did: {e}"))
                })
                .transpose()?;
            let key = dd.init(&InitOptions {
                name,
                country,
                api: addrs.api,
                listen: addrs.listen,
                bootstrap: addrs.bootstrap,
            })?;
            if let Some((g, id)) = &genesis {
                crate::federation::adopt(&dd, g, id)?;
            }
            if let Some(hub) = &recover {
                dd.set_identity(hub)?;
                eprintln!(
                    "this node signs for {} with the new key {} once the federation's members recover it:\n  hubcat federation recover --data-dir DIR {} --key {} --reason …",
                    hub.to_did(),
                    key.id().to_did(),
                    hub.to_did(),
                    key.id().to_did()
                );
            }
            if json {
                print_json(&serde_json::json!({
                    "did": key.id().to_did(),
                    "data_dir": dd.root(),
                    "config": dd.config_path(),
                    "key": dd.key_path(),
                    "token": dd.token_path(),
                }))
            } else {
                println!("{}", key.id().to_did());
                eprintln!(
                    "created hub in {} (key {} and API token {} are mode 0600)\nstart it with: hubcat run --data-dir {}",
                    dd.root().display(),
                    dd.key_path().display(),
                    dd.token_path().display(),
                    dd.root().display()
                );
                Ok(())
            }
        }
        Command::Run {
            dir,
            addrs,
            log_format,
            config,
            init_if_missing,
        } => {
            let dd = DataDir::new(&dir.data_dir).with_config(config);
            let mut flags =
                crate::datadir::addr_flags(addrs.api.as_deref(), &addrs.listen, &addrs.bootstrap);
            if let Some(f) = log_format {
                flags.push(("log.format", toml::Value::String(f)));
            }
            let mut created = None;
            if init_if_missing {
                let wanted = dd.load_config(env_map(), flags.clone())?.config;
                created = crate::ops::init_if_missing(&dd, &wanted.hub.name, &wanted.hub.country)?;
            }
            // Check the key before anything else: a readable key file must stop the start.
            dd.load_key()?;
            let resolved = dd.load_config(env_map(), flags)?;
            init_logging(&resolved.config.log);
            if let Some(did) = created {
                tracing::info!(%did, dir = %dd.root().display(), "created the hub (key and API token mode 0600)");
            }
            for name in &resolved.ignored_env {
                tracing::warn!(variable = %name, "environment variable is not a hubcat option; ignored");
            }
            let node = crate::node::start(&dd, &resolved.config).await?;
            eprintln!(
                "hubcat node {} serving on http://{}",
                node.catalogue.hub_id(),
                node.api_addr
            );
            crate::node::shutdown_signal().await;
            tracing::info!("stopping (a second SIGINT or SIGTERM stops at once)");
            tokio::select! {
                stopped = tokio::time::timeout(crate::node::SHUTDOWN_BUDGET, node.shutdown()) => match stopped {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("shutdown took longer than {:?}; exiting (acknowledged writes are durable)", crate::node::SHUTDOWN_BUDGET);
                        Ok(())
                    }
                },
                _ = crate::node::shutdown_signal() => {
                    tracing::warn!("second signal: exiting without finishing the shutdown");
                    Ok(())
                }
            }
        }
        Command::Health { dir, live } => {
            let v = crate::ops::probe(&dir.data_dir, live).await?;
            if json {
                print_json(&v)
            } else {
                println!("{}", if live { "alive" } else { "ready" });
                Ok(())
            }
        }
        Command::Backup { dir, out } => {
            let dd = DataDir::new(&dir.data_dir);
            let r = crate::backup::backup(&dd, &out).await?;
            if json {
                print_json(&r)
            } else {
                println!(
                    "backup {}: {} records, {} signed changes from {} publishers, {} bytes (verified; taken from the {})",
                    r.file.display(),
                    r.records,
                    r.changes,
                    r.publishers,
                    r.bytes,
                    if r.source == "node" { "running node" } else { "store, node stopped" }
                );
                Ok(())
            }
        }
        Command::Restore { dir, file } => {
            let dd = DataDir::new(&dir.data_dir);
            let r =
                tokio::task::spawn_blocking(move || crate::backup::restore(&dd, &file)).await??;
            if json {
                print_json(&r)
            } else {
                println!(
                    "restored {} records ({} signed changes, {} publishers); the node will sign with a new actor",
                    r.records, r.changes, r.publishers
                );
                if let Some(p) = &r.previous_store {
                    println!("previous store kept at {}", p.display());
                }
                Ok(())
            }
        }
        Command::Publish { dir, file } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let (bytes, is_toml) = read_record_input(&file)?;
            let v = client.publish(bytes, is_toml).await?;
            if json {
                print_json(&v)
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
                Ok(())
            }
        }
        Command::Withdraw { dir, id } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let v = client
                .send(
                    reqwest::Method::DELETE,
                    &format!("/v1/records/{}", urlencode(&id)),
                    None,
                    true,
                )
                .await?;
            if json {
                print_json(&v)
            } else {
                println!("withdrawn {}", v["withdrawn"].as_str().unwrap_or(&id));
                Ok(())
            }
        }
        Command::Show { dir, id } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let v = client
                .get(&format!("/v1/records/{}", urlencode(&id)))
                .await?;
            if json {
                print_json(&v)
            } else {
                print_record(&v);
                Ok(())
            }
        }
        Command::List {
            dir,
            kind,
            country,
            category,
            publisher,
        } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let mut query = Vec::new();
            for (k, v) in [
                ("kind", kind),
                ("country", country),
                ("category", category),
                ("publisher", publisher),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let v = client
                .get(&format!("/v1/records?{}", query.join("&")))
                .await?;
            if json {
                print_json(&v)
            } else {
                print_list(&v);
                Ok(())
            }
        }
        Command::Status { dir } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let v = client.get("/v1/status").await?;
            if json {
                print_json(&v)
            } else {
                println!(
                    "hub      {} ({})",
                    v["name"].as_str().unwrap_or(""),
                    v["did"].as_str().unwrap_or("")
                );
                println!("records  {}", v["records"]);
                println!("docs     {}   changes {}", v["documents"], v["changes"]);
                println!("digest   {}", v["digest"].as_str().unwrap_or(""));
                println!("peers    {} connected", v["peers"]);
                if let Some(id) = v["peer_id"].as_str() {
                    println!("peer id  {id}");
                }
                for a in v["listen"].as_array().into_iter().flatten() {
                    println!("listen   {}", a.as_str().unwrap_or(""));
                }
                for p in v["sync"].as_array().into_iter().flatten() {
                    println!(
                        "sync     {:<10} {}  last {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["peer_id"].as_str().unwrap_or(""),
                        p["last_sync"]
                            .as_i64()
                            .map(ago)
                            .unwrap_or_else(|| "never".into())
                    );
                }
                Ok(())
            }
        }
        Command::Peers { dir } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let v = client.get("/v1/peers").await?;
            if json {
                return print_json(&v);
            }
            let peers = v.as_array().cloned().unwrap_or_default();
            if peers.is_empty() {
                println!("no peers yet (check p2p.bootstrap, or wait for discovery)");
                return Ok(());
            }
            for p in peers {
                println!(
                    "{} {}  {}",
                    if p["connected"].as_bool() == Some(true) {
                        "●"
                    } else {
                        "○"
                    },
                    p["name"].as_str().unwrap_or("?"),
                    p["did"].as_str().unwrap_or("(not a hub key)")
                );
                println!("    peer id   {}", p["peer_id"].as_str().unwrap_or(""));
                for a in p["addresses"].as_array().into_iter().flatten().take(3) {
                    println!("    address   {}", a.as_str().unwrap_or(""));
                }
                println!(
                    "    connected {}   last sync {}   rounds {}",
                    p["connected_since"]
                        .as_i64()
                        .map(ago)
                        .unwrap_or_else(|| "-".into()),
                    p["last_sync"]
                        .as_i64()
                        .map(ago)
                        .unwrap_or_else(|| "never".into()),
                    p["sync_rounds"]
                );
                println!(
                    "    bytes in  {}   out {}   score {}",
                    p["bytes_in"],
                    p["bytes_out"],
                    p["score"]
                        .as_f64()
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        Command::Export {
            dir,
            format,
            kind,
            country,
            category,
            publisher,
        } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let mut query = vec![format!("format={}", urlencode(&format))];
            for (k, v) in [
                ("kind", kind),
                ("country", country),
                ("category", category),
                ("publisher", publisher),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let text = client
                .raw(
                    reqwest::Method::GET,
                    &format!("/v1/export?{}", query.join("&")),
                    None,
                    false,
                )
                .await?;
            if format == "bundle" {
                // Pretty-printed, as before.
                let v: Value = serde_json::from_str(&text)?;
                print_json(&v)
            } else {
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                Ok(())
            }
        }
        Command::Import(args) => crate::import::run_cli(args, json).await,
        Command::Verify { file } => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let bundle: Bundle = serde_json::from_slice(&text)
                .map_err(|e| anyhow!("{} is not a hubcat bundle: {e}", file.display()))?;
            let report = bundle::verify(&bundle, hubcat_protocol::now_ms())?;
            if json {
                print_json(&serde_json::json!({"valid": true, "report": report}))
            } else {
                println!(
                    "valid: {} records, {} signed changes from {} publishers verified",
                    report.records, report.changes, report.publishers
                );
                Ok(())
            }
        }
        Command::Federation { command } => crate::federation::dispatch(command, json).await,
        Command::Key {
            command: KeyCommand::Show { dir },
        } => {
            let dd = DataDir::new(&dir.data_dir);
            let (hub, key) = dd.load_identity()?;
            let secret = key.secret_bytes();
            let mut bytes = *secret;
            let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes)
                .map_err(|e| anyhow!("key: {e}"))?;
            let peer_id = keypair.public().to_peer_id();
            let id = key.id();
            if json {
                print_json(&serde_json::json!({
                    "did": hub.to_did(),
                    "signing_key": id.to_did(),
                    "public_key": hex::encode(id.as_bytes()),
                    "peer_id": peer_id.to_string(),
                }))
            } else {
                println!("did          {}", hub.to_did());
                if hub != id {
                    println!("signing key  {} (handed over to)", id.to_did());
                }
                println!("public key   {}", hex::encode(id.as_bytes()));
                println!("peer id      {peer_id}");
                Ok(())
            }
        }
        Command::Key {
            command: KeyCommand::Rotate { dir, reason },
        } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let body = serde_json::json!({ "reason": reason });
            let v = client
                .send(
                    reqwest::Method::POST,
                    "/v1/key/rotate",
                    Some((body.to_string().into_bytes(), false)),
                    true,
                )
                .await?;
            if json {
                print_json(&v)
            } else {
                println!(
                    "{} now signs with {} (key step {}); the old key is retired everywhere once the federation has the rotation. Back up the new hub.key; the peer id changes at the next start.",
                    v["did"].as_str().unwrap_or("?"),
                    v["key"].as_str().unwrap_or("?"),
                    v["step"]
                );
                Ok(())
            }
        }
        Command::Config { command } => {
            match command {
                ConfigCommand::Example => print!("{}", hubcat_config::example_toml()),
                ConfigCommand::Reference => print!("{}", hubcat_config::reference_markdown()),
            }
            Ok(())
        }
        Command::Demo(args) => crate::demo::run(args, json).await,
        Command::Search(args) => query::search(*args, json).await,
        Command::Gaps(args) => query::gaps(args, json).await,
        Command::Duplicates { dir } => query::duplicates(dir, json).await,
        Command::Match(args) => query::match_services(*args, json).await,
        Command::Confirm(args) => query::confirm(args, json).await,
        Command::Reindex { dir } => query::reindex(dir, json).await,
    }
}

/// Set up `tracing`: RUST_LOG overrides the configured filter.
pub fn init_logging(log: &hubcat_config::LogSection) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match log.format {
        hubcat_config::LogFormat::Json => builder.json().try_init(),
        hubcat_config::LogFormat::Human => builder.try_init(),
    };
}

fn read_record_input(file: &str) -> anyhow::Result<(Vec<u8>, bool)> {
    let bytes = if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {file}"))?
    };
    let starts_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let is_toml = file.ends_with(".toml") || (file == "-" && !starts_json);
    Ok((bytes, is_toml))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A small client for the node's API, found through the data directory.
pub struct Client {
    base: String,
    token: Option<String>,
    data_dir: PathBuf,
    http: reqwest::Client,
}

impl Client {
    pub fn for_dir(dir: &Path) -> anyhow::Result<Self> {
        let dd = DataDir::new(dir);
        if !dd.key_path().exists() {
            bail!(crate::datadir::DataDirError::NotInitialised(
                dir.display().to_string()
            ));
        }
        let addr = match dd.read_api_addr() {
            Some(a) => a,
            None => dd.load_config(env_map(), vec![])?.config.api.listen,
        };
        let host = if addr.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        Ok(Client {
            base: format!("http://{host}"),
            token: dd.load_token().ok(),
            data_dir: dir.to_path_buf(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None, false).await
    }

    async fn publish(&self, body: Vec<u8>, is_toml: bool) -> anyhow::Result<Value> {
        self.send(
            reqwest::Method::POST,
            "/v1/records",
            Some((body, is_toml)),
            true,
        )
        .await
    }

    /// A request whose answer is returned as text (exports in CSV, imports' reports); a
    /// non-2xx answer becomes an error naming the field and the detail.
    pub(crate) async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        write: bool,
    ) -> anyhow::Result<String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if write {
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp.text().await?;
        if status.is_success() {
            Ok(text)
        } else {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let field = body["field"]
                .as_str()
                .map(|f| format!("field `{f}`: "))
                .unwrap_or_default();
            let detail = body["detail"].as_str().unwrap_or("(no detail)");
            bail!("{field}{detail} (HTTP {})", status.as_u16())
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(
                "the hubcat node for {} is not running (no answer at {}); start it with `hubcat run --data-dir {}`",
                self.data_dir.display(),
                self.base,
                self.data_dir.display()
            )
        } else {
            anyhow!("request to {} failed: {e}", self.base)
        }
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, bool)>,
        write: bool,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if write {
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
        }
        if let Some((bytes, is_toml)) = body {
            let ct = if is_toml {
                "application/toml"
            } else {
                "application/json"
            };
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "the hubcat node for {} is not running (no answer at {}); start it with `hubcat run --data-dir {}`",
                    self.data_dir.display(),
                    self.base,
                    self.data_dir.display()
                )
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let field = body["field"]
                .as_str()
                .map(|f| format!("field `{f}`: "))
                .unwrap_or_default();
            let detail = body["detail"].as_str().unwrap_or("(no detail)");
            bail!("{field}{detail} (HTTP {})", status.as_u16())
        }
    }
}

fn title_of(record: &Value) -> String {
    let t = &record["title"];
    t["en"]
        .as_str()
        .or_else(|| {
            t.as_object()
                .and_then(|m| m.values().next())
                .and_then(Value::as_str)
        })
        .unwrap_or("")
        .to_owned()
}

fn print_record(v: &Value) {
    let r = &v["record"];
    let p = &v["provenance"];
    println!("id          {}", v["id"].as_str().unwrap_or(""));
    println!("kind        {}", v["kind"].as_str().unwrap_or(""));
    println!("title       {}", title_of(r));
    println!("publisher   {}", v["publisher"].as_str().unwrap_or(""));
    println!("modified    {}", r["modified"].as_str().unwrap_or(""));
    println!("signed at   {}", p["signed_at"].as_str().unwrap_or(""));
    println!("change      {}", p["change_hash"].as_str().unwrap_or(""));
    println!("signature   {}", p["signature"].as_str().unwrap_or(""));
    println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
}

fn print_list(v: &Value) {
    let empty = Vec::new();
    let records = v["records"].as_array().unwrap_or(&empty);
    let rows: Vec<[String; 4]> = records
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or("");
            let short_id = match id.split_once('@') {
                Some((slot, publ)) => {
                    format!("{slot}@{}", publ.chars().take(12).collect::<String>())
                }
                None => id.to_owned(),
            };
            let mut title = title_of(&r["record"]);
            if title.chars().count() > 50 {
                title = title.chars().take(49).collect::<String>() + "…";
            }
            let what = r["record"]["category"]
                .as_str()
                .or(r["record"]["practice_type"].as_str())
                .or(r["record"]["hub_type"].as_str())
                .unwrap_or("");
            [
                short_id,
                r["kind"].as_str().unwrap_or("").to_owned(),
                what.to_owned(),
                title,
            ]
        })
        .collect();
    let headers = ["ID", "KIND", "TYPE", "TITLE"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < 3 {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    println!("{} records", rows.len());
}

/// "12 s ago" for a unix-ms time.
fn ago(ms: i64) -> String {
    let secs = (hubcat_protocol::now_ms() - ms).max(0) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}
