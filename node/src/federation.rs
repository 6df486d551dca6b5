//! Federation membership on the node's side: the genesis file in the data directory and the
//! `hubcat federation …` commands that create, sign and join one, and cast and list the
//! members' votes (through the running node: see [`crate::engine`]'s membership rules).
//!
//! A node that holds a verified `DIR/genesis.json` belongs to that federation: the genesis id
//! names its gossip topic and protocols (instead of `p2p.federation`), so it talks only to
//! nodes of the same federation. A genesis whose founder signatures do not all verify is
//! refused by `join`, by `init --genesis` and at start.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::Subcommand;
use hubcat_protocol::genesis::Genesis;
use serde_json::json;

use crate::cli::{print_json, Client, DataDirArg};
use crate::datadir::DataDir;

/// Where a data directory keeps its federation's genesis.
pub fn genesis_path(dir: &DataDir) -> PathBuf {
    dir.root().join("genesis.json")
}

fn read_genesis(path: &Path) -> anyhow::Result<Genesis> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    Genesis::from_json(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The data directory's federation, verified: `None` when it joined none.
pub fn load(dir: &DataDir) -> anyhow::Result<Option<(Genesis, String)>> {
    let path = genesis_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let genesis = read_genesis(&path)?;
    let id = genesis.verify().map_err(|e| {
        anyhow!(
            "{}: {e}; this node cannot run in a federation whose genesis does not verify",
            path.display()
        )
    })?;
    Ok(Some((genesis, id)))
}

/// Read a genesis file and check every founder signature; returns it with its id.
pub fn check(file: &Path) -> anyhow::Result<(Genesis, String)> {
    let genesis = read_genesis(file)?;
    let id = genesis
        .verify()
        .map_err(|e| anyhow!("refusing genesis {}: {e}", file.display()))?;
    Ok((genesis, id))
}

/// Join the federation of the genesis in `file`: refuses a genesis whose founder signatures do
/// not all verify, and a data directory that already belongs to another federation. Returns
/// the federation id.
pub fn join(dir: &DataDir, file: &Path) -> anyhow::Result<String> {
    if !dir.key_path().exists() {
        bail!(
            "{} is not a hubcat data directory (no hub.key); create one with `hubcat init`",
            dir.root().display()
        );
    }
    let (genesis, id) = check(file)?;
    adopt(dir, &genesis, &id)?;
    Ok(id)
}

/// Keep a verified genesis in the data directory.
pub fn adopt(dir: &DataDir, genesis: &Genesis, id: &str) -> anyhow::Result<()> {
    if let Some((_, current)) = load(dir)? {
        if current != id {
            bail!(
                "{} already belongs to federation {current}; a node belongs to one federation",
                dir.root().display()
            );
        }
    }
    let path = genesis_path(dir);
    std::fs::write(&path, genesis.to_json())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Subcommand, Debug)]
pub enum FederationCommand {
    /// Write a new genesis (unsigned) for founders to sign: name, founder hubs, quorum.
    Create {
        /// Federation name: lowercase letters, digits and dashes.
        #[arg(long)]
        name: String,
        /// A founding hub's did (repeat for each founder).
        #[arg(long = "founder", required = true)]
        founders: Vec<String>,
        /// Endorsements needed to admit a hub (and votes to suspend or reinstate one).
        #[arg(long)]
        quorum: u32,
        /// Write the genesis here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add this hub's signature to a genesis file (the hub must be a founder).
    SignGenesis {
        #[command(flatten)]
        dir: DataDirArg,
        file: PathBuf,
    },
    /// Join the federation of a genesis file whose founder signatures all verify.
    Join {
        #[command(flatten)]
        dir: DataDirArg,
        file: PathBuf,
    },
    /// Show this node's federation: id, name, founders, quorum.
    Show {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Endorse a hub for membership (as a member); it is admitted once the quorum of members
    /// has endorsed it. Talks to the running node.
    Endorse {
        #[command(flatten)]
        dir: DataDirArg,
        /// The hub's did (`did:key:z6Mk…`).
        did: String,
        /// Why (kept in the signed vote).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Vote to suspend a member: its records stop being served and its changes are held back
    /// once the quorum of members voted so. Talks to the running node.
    Suspend {
        #[command(flatten)]
        dir: DataDirArg,
        did: String,
        #[arg(long)]
        reason: String,
    },
    /// Vote to reinstate a suspended hub (in effect once the quorum voted so). Talks to the
    /// running node.
    Reinstate {
        #[command(flatten)]
        dir: DataDirArg,
        did: String,
        #[arg(long)]
        reason: String,
    },
    /// Vote, as a member, to give a hub that lost its key (or whose key leaked) a new key:
    /// once the quorum of members named the same key it signs for the hub, and changes signed
    /// with the old key afterwards are refused. Talks to the running node.
    Recover {
        #[command(flatten)]
        dir: DataDirArg,
        /// The hub's did.
        did: String,
        /// The hub's new key (the did `hubcat init --recover` printed on its new node).
        #[arg(long)]
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Members, candidates with their endorsements, and suspended hubs: who voted what, when.
    /// Talks to the running node.
    Members {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// Cast this hub's vote through the running node.
async fn vote(
    dir: &DataDirArg,
    action: &str,
    did: &str,
    reason: &str,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let client = Client::for_dir(&dir.data_dir)?;
    let mut body = json!({"action": action, "target": did, "reason": reason});
    if let Some(key) = key {
        body["key"] = key.into();
    }
    let v = client
        .send(
            reqwest::Method::POST,
            "/v1/federation/votes",
            Some((body.to_string().into_bytes(), false)),
            true,
        )
        .await?;
    if json {
        return print_json(&v);
    }
    for vote in v["votes"].as_array().into_iter().flatten() {
        let case = vote["case"].as_u64().unwrap_or(0);
        println!(
            "voted {action} {did}{}; see `hubcat federation members` for where it stands",
            if case > 0 {
                format!(" (case {case})")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn print_members(v: &serde_json::Value) {
    let quorum = v["quorum"].as_u64().unwrap_or(0);
    println!(
        "federation {} (quorum {quorum})",
        v["federation"].as_str().unwrap_or("?")
    );
    for (list, title) in [
        ("members", "members"),
        ("candidates", "candidates"),
        ("suspended", "suspended"),
    ] {
        let hubs = v[list].as_array().cloned().unwrap_or_default();
        println!("{title} ({}):", hubs.len());
        for hub in hubs {
            println!(
                "  {}  {}",
                hub["did"].as_str().unwrap_or("?"),
                hub["standing"].as_str().unwrap_or("?")
            );
            for vote in hub["votes"].as_array().into_iter().flatten() {
                let reason = vote["reason"].as_str().unwrap_or("");
                println!(
                    "      {} {}{} by {} at {}{}",
                    vote["action"].as_str().unwrap_or("?"),
                    if vote["case"].as_u64().unwrap_or(0) > 0 {
                        "case "
                    } else {
                        ""
                    },
                    match vote["case"].as_u64().unwrap_or(0) {
                        0 => String::new(),
                        c => c.to_string(),
                    },
                    vote["voter"].as_str().unwrap_or("?"),
                    vote["at"].as_str().unwrap_or("?"),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                );
            }
        }
    }
    let held = v["held_changes"].as_u64().unwrap_or(0);
    if held > 0 {
        println!("{held} changes held until their authors are members");
    }
}

pub async fn dispatch(command: FederationCommand, json: bool) -> anyhow::Result<()> {
    match command {
        FederationCommand::Endorse { dir, did, reason } => {
            vote(&dir, "endorse", &did, &reason, None, json).await
        }
        FederationCommand::Suspend { dir, did, reason } => {
            vote(&dir, "suspend", &did, &reason, None, json).await
        }
        FederationCommand::Reinstate { dir, did, reason } => {
            vote(&dir, "reinstate", &did, &reason, None, json).await
        }
        FederationCommand::Recover {
            dir,
            did,
            key,
            reason,
        } => vote(&dir, "recover", &did, &reason, Some(&key), json).await,
        FederationCommand::Members { dir } => {
            let client = Client::for_dir(&dir.data_dir)?;
            let v = client.get("/v1/federation/members").await?;
            if json {
                print_json(&v)
            } else {
                print_members(&v);
                Ok(())
            }
        }
        FederationCommand::Create {
            name,
            founders,
            quorum,
            out,
        } => {
            let created = hubcat_protocol::record::format_timestamp(hubcat_protocol::now_ms());
            let genesis = Genesis::new(&name, &founders, quorum, &created)?;
            let text = genesis.to_json();
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    if json {
                        println!("{}", json!({"file": path, "id": genesis.id()}));
                    } else {
                        println!(
                            "genesis of {} written to {}; each founder signs it with `hubcat federation sign-genesis --data-dir DIR {}`",
                            genesis.id(),
                            path.display(),
                            path.display()
                        );
                    }
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        FederationCommand::SignGenesis { dir, file } => {
            let dir = DataDir::new(dir.data_dir);
            let key = dir.load_key()?;
            let mut genesis = read_genesis(&file)?;
            genesis.sign(&key)?;
            std::fs::write(&file, genesis.to_json())
                .with_context(|| format!("cannot write {}", file.display()))?;
            let missing = genesis.missing_signatures();
            if json {
                println!(
                    "{}",
                    json!({"id": genesis.id(), "signed_by": key.id().to_did(), "missing": missing})
                );
            } else if missing.is_empty() {
                println!(
                    "signed; every founder has signed {}: hubs join with `hubcat federation join --data-dir DIR {}`",
                    genesis.id(),
                    file.display()
                );
            } else {
                println!(
                    "signed as {}; still to sign: {}",
                    key.id().to_did(),
                    missing.join(", ")
                );
            }
            Ok(())
        }
        FederationCommand::Join { dir, file } => {
            let dir = DataDir::new(dir.data_dir);
            let id = join(&dir, &file)?;
            if json {
                println!("{}", json!({"federation": id}));
            } else {
                println!("joined federation {id}; restart the node (`hubcat run`) to use it");
            }
            Ok(())
        }
        FederationCommand::Show { dir } => {
            let dir = DataDir::new(dir.data_dir);
            match load(&dir)? {
                Some((g, id)) => {
                    if json {
                        println!(
                            "{}",
                            json!({"id": id, "name": g.name, "founders": g.founders,
                                   "quorum": g.quorum, "created": g.created})
                        );
                    } else {
                        println!(
                            "federation {id}\nname     {}\nquorum   {}\ncreated  {}",
                            g.name, g.quorum, g.created
                        );
                        for f in &g.founders {
                            println!("founder  {f}");
                        }
                    }
                }
                None => {
                    if json {
                        println!("{}", json!({"id": null}));
                    } else {
                        println!("this node has joined no federation genesis (it uses p2p.federation from its config)");
                    }
                }
            }
            Ok(())
        }
    }
}
