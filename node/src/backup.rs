//! Backup and restore of a node's catalogue.
//!
//! A backup is the catalogue's offline-verifiable bundle (every document's signed history and
//! the publishers' keys, the same file `hubcat export` writes), taken under the engine's lock,
//! so it is one consistent point in time even while the node runs and takes writes. It holds
//! no secret: the hub key and API token are backed up separately (operator guide).
//!
//! - [`backup`] asks the running node (`GET /v1/export?format=bundle`) or, when no node runs
//!   on the directory, opens the store itself; it verifies every signature before writing the
//!   file, so a backup that exists is a good one.
//! - [`restore`] rebuilds the store from a backup into a fresh sled store beside the old one,
//!   through the normal ingest path (every change verified again), with a **new Automerge actor**:
//!   the hub may have signed changes after the backup that peers already hold, and reusing the
//!   old actor would give the next change a sequence number those changes already took. Only
//!   when the new store is complete does it replace the old one, which is kept beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use hubcat_protocol::bundle::{self, Bundle};
use hubcat_protocol::SignedChange;
use serde::Serialize;

use crate::datadir::DataDir;
use crate::engine::{Catalogue, Rules};
use crate::store::{SledStore, Store, StoreError};

/// Changes ingested per call while restoring (bounds the memory of one verification batch).
const RESTORE_BATCH: usize = 512;
/// The store's metadata key holding the actor suffix (see [`Catalogue::open`]).
const ACTOR_META: &str = "actor_suffix";

/// What a backup wrote.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub records: usize,
    pub changes: usize,
    pub publishers: usize,
    pub bytes: u64,
    /// `node` when the running node took the snapshot, `store` when the store was read offline.
    pub source: &'static str,
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub records: usize,
    pub changes: usize,
    pub publishers: usize,
    /// Where the store that was replaced now is (none when the directory had no store).
    pub previous_store: Option<PathBuf>,
    /// The restored node signs with a new Automerge actor (always true; reported for scripts).
    pub new_actor: bool,
}

/// Take a consistent backup of the catalogue in `dd` and write it to `out` (refusing to
/// overwrite an existing file).
pub async fn backup(dd: &DataDir, out: &Path) -> anyhow::Result<BackupReport> {
    if out.exists() {
        bail!(
            "{} already exists; choose a new file name (a backup never overwrites)",
            out.display()
        );
    }
    let (bundle, source) = match crate::ops::running_api(dd) {
        Some(addr) => match from_node(addr).await {
            Ok(b) => (b, "node"),
            Err(NodeAnswer::NotRunning) => (from_store(dd).await?, "store"),
            Err(NodeAnswer::Failed(e)) => return Err(e),
        },
        None => (from_store(dd).await?, "store"),
    };
    let report = bundle::verify(&bundle, hubcat_protocol::now_ms())
        .map_err(|e| anyhow!("the snapshot does not verify, nothing written: {e}"))?;
    let bytes = serde_json::to_vec(&bundle)?;
    write_new(out, &bytes)?;
    Ok(BackupReport {
        file: out.to_path_buf(),
        records: report.records,
        changes: report.changes,
        publishers: report.publishers,
        bytes: bytes.len() as u64,
        source,
    })
}

enum NodeAnswer {
    NotRunning,
    Failed(anyhow::Error),
}

async fn from_node(addr: std::net::SocketAddr) -> Result<Bundle, NodeAnswer> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| NodeAnswer::Failed(e.into()))?;
    let url = format!("http://{addr}/v1/export?format=bundle");
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        // A stale api.addr from a node that was killed: nobody answers there.
        Err(e) if e.is_connect() => return Err(NodeAnswer::NotRunning),
        Err(e) => return Err(NodeAnswer::Failed(anyhow!("{url}: {e}"))),
    };
    if !resp.status().is_success() {
        return Err(NodeAnswer::Failed(anyhow!(
            "{url} answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    resp.json::<Bundle>()
        .await
        .map_err(|e| NodeAnswer::Failed(anyhow!("{url}: not a bundle: {e}")))
}

async fn from_store(dd: &DataDir) -> anyhow::Result<Bundle> {
    let (hub, key) = dd.load_identity()?;
    let path = dd.store_path();
    if !path.exists() {
        bail!(
            "{} has no store yet: nothing to back up",
            dd.root().display()
        );
    }
    tokio::task::spawn_blocking(move || -> anyhow::Result<Bundle> {
        let store = SledStore::open(&path)?;
        let catalogue = Catalogue::open_as(Arc::new(store), hub, key, None)?;
        Ok(catalogue.export_bundle()?)
    })
    .await?
}

/// Write `bytes` to a new file `path` through a temporary file beside it, so a crash never
/// leaves a half-written backup under the final name.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path)
        .map_err(|e| anyhow!("cannot create {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Replace the store in `dd` with the catalogue in the backup `file`. The node must be
/// stopped; the directory must hold the hub (its key), restored separately if it was lost.
pub fn restore(dd: &DataDir, file: &Path) -> anyhow::Result<RestoreReport> {
    let (hub, key) = dd.load_identity()?;
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bundle: Bundle = serde_json::from_slice(&text)
        .map_err(|e| anyhow!("{} is not a hubcat backup: {e}", file.display()))?;
    let report = bundle::verify(&bundle, hubcat_protocol::now_ms())
        .map_err(|e| anyhow!("{} does not verify, nothing changed: {e}", file.display()))?;
    let envelopes = bundle
        .changes
        .iter()
        .map(|c| c.envelope())
        .collect::<Result<Vec<SignedChange>, String>>()
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;

    let store_path = dd.store_path();
    // The running node holds the store's lock: find that out before writing anything.
    if store_path.exists() {
        match SledStore::open(&store_path) {
            Ok(store) => drop(store),
            Err(StoreError::Locked(_)) => bail!(
                "a node is running on {}; stop it before restoring (`hubcat backup` works while it runs, restore does not)",
                dd.root().display()
            ),
            Err(e) if e.to_string().contains("lock") => bail!(
                "the store in {} is locked ({e}); stop the node before restoring",
                dd.root().display()
            ),
            // A damaged store is a reason to restore, not a reason to stop.
            Err(e) => tracing::warn!(error = %e, "the current store does not open; replacing it"),
        }
    }

    let stamp = hubcat_protocol::now_ms();
    let fresh = dd.root().join(format!("store.restoring-{stamp}"));
    let rules = crate::federation::load(dd)?.map(|(g, id)| Rules::from_genesis(&g, &id));
    let built = build_store(&fresh, hub, key, rules, envelopes, report.records);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    let previous = if store_path.exists() {
        let aside = dd.root().join(format!("store.before-restore-{stamp}"));
        std::fs::rename(&store_path, &aside)
            .with_context(|| format!("cannot move {} aside", store_path.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&fresh, &store_path)
        .with_context(|| format!("cannot move the restored store to {}", store_path.display()))?;
    Ok(RestoreReport {
        records: report.records,
        changes: report.changes,
        publishers: report.publishers,
        previous_store: previous,
        new_actor: true,
    })
}

/// Build a complete store at `path` from verified-by-bundle changes, re-verified on ingest.
fn build_store(
    path: &Path,
    hub: hubcat_protocol::HubId,
    key: hubcat_protocol::HubKey,
    rules: Option<Rules>,
    envelopes: Vec<SignedChange>,
    expected_records: usize,
) -> anyhow::Result<()> {
    let store = Arc::new(SledStore::open(path)?);
    // A new actor for the hub's own document: set before the catalogue opens, which then
    // signs every new change with it.
    let mut suffix = [0u8; 16];
    getrandom::fill(&mut suffix).map_err(|e| anyhow!("random source: {e}"))?;
    store.put_meta(ACTOR_META, &suffix)?;
    let catalogue = Catalogue::open_as(store.clone(), hub, key, rules)?;
    let now = hubcat_protocol::now_ms();
    let mut refused = Vec::new();
    // The membership document first: the hubs' changes may be signed under key handovers
    // it records.
    let mut rest = envelopes;
    rest.sort_by_key(|e| e.doc.hub().is_some());
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(RESTORE_BATCH));
        let batch = std::mem::replace(&mut rest, tail);
        let r = catalogue.ingest(batch, now)?;
        refused.extend(r.refused.into_iter().map(|r| r.detail));
    }
    if let Some(first) = refused.first() {
        bail!(
            "{} changes of the backup were refused (first: {first}); nothing changed",
            refused.len()
        );
    }
    let records = catalogue.record_count();
    if records != expected_records {
        bail!(
            "the restored catalogue holds {records} records, the backup {expected_records}; nothing changed"
        );
    }
    catalogue.snapshot()?;
    store.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::InitOptions;
    use hubcat_protocol::Record;

    fn service(slug: &str) -> Record {
        Record::from_value(serde_json::json!({"kind": "service", "id": slug,
            "title": {"en": "A service"}, "description": {"en": "What it does."},
            "category": "skills-and-training"}))
        .expect("valid")
    }

    fn hub(dir: &Path) -> DataDir {
        let dd = DataDir::new(dir.join("hub"));
        dd.init(&InitOptions {
            name: "HDS".into(),
            country: "SE".into(),
            ..Default::default()
        })
        .expect("init");
        dd
    }

    fn open(dd: &DataDir) -> Catalogue {
        let store = SledStore::open(&dd.store_path()).expect("store");
        Catalogue::open(Arc::new(store), dd.load_key().expect("key")).expect("catalogue")
    }

    fn actor(dd: &DataDir) -> Vec<u8> {
        let store = SledStore::open(&dd.store_path()).expect("store");
        store.get_meta(ACTOR_META).expect("meta").expect("actor")
    }

    #[tokio::test]
    async fn offline_backup_restores_with_a_new_actor_and_refuses_bad_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dd = hub(tmp.path());
        {
            let c = open(&dd);
            c.publish(&service("one")).expect("publish");
            c.publish(&service("two")).expect("publish");
            c.snapshot().expect("snapshot");
        }
        let old_actor = actor(&dd);
        let out = tmp.path().join("hub.backup.json");
        let report = backup(&dd, &out).await.expect("backup");
        assert_eq!((report.records, report.source), (2, "store"));
        assert!(backup(&dd, &out).await.is_err(), "never overwrites");

        // A damaged backup is refused and the store is untouched.
        let mut damaged: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
        damaged["changes"][0]["signature"] = serde_json::Value::String("00".repeat(64));
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, serde_json::to_vec(&damaged).expect("json")).expect("write");
        assert!(restore(&dd, &bad).is_err());
        assert_eq!(actor(&dd), old_actor, "nothing changed");

        let r = restore(&dd, &out).expect("restore");
        assert_eq!(r.records, 2);
        assert!(r.previous_store.as_ref().is_some_and(|p| p.exists()));
        assert_ne!(actor(&dd), old_actor, "a restored node takes a new actor");
        let c = open(&dd);
        assert_eq!(c.record_count(), 2);
        c.publish(&service("three")).expect("publish after restore");
        assert_eq!(c.record_count(), 3);
    }
}
