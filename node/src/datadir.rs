//! A node's data directory: configuration, hub key, API token and store.
//!
//! ```text
//! DIR/hubcat.toml   configuration (see config/hubcat.example.toml)
//! DIR/hub.key       the hub's ed25519 secret key, mode 0600
//! DIR/api.token     bearer token for the write API, mode 0600
//! DIR/api.addr      the API address of the running node (written at start)
//! DIR/store/        sled store
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hubcat_config::{Resolved, Sources, CONFIG_FILE};
use hubcat_protocol::{HubId, HubKey};

const KEY_HEADER: &str = "hubcat-hub-key-v1";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{0} already holds a hub (hub.key exists); refusing to overwrite it")]
    AlreadyInitialised(String),
    #[error("{0} is not a hubcat data directory (no hub.key); create one with `hubcat init --data-dir {0} --name NAME --country CC`")]
    NotInitialised(String),
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyPermissions { path: String, mode: u32 },
    #[error("key file {0} is damaged: {1}")]
    BadKey(String, String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] hubcat_config::ConfigError),
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The configuration keys set by address flags (`--api`, `--listen`, `--bootstrap`), for
/// `init` to write and `run` to override with.
pub fn addr_flags(
    api: Option<&str>,
    listen: &[String],
    bootstrap: &[String],
) -> Vec<(&'static str, toml::Value)> {
    let list =
        |v: &[String]| toml::Value::Array(v.iter().cloned().map(toml::Value::String).collect());
    let mut flags = Vec::new();
    if let Some(a) = api {
        flags.push(("api.listen", toml::Value::String(a.to_owned())));
    }
    if !listen.is_empty() {
        flags.push(("p2p.listen", list(listen)));
    }
    if !bootstrap.is_empty() {
        flags.push(("p2p.bootstrap", list(bootstrap)));
    }
    flags
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    /// A configuration file used instead of DIR/hubcat.toml (`--config`, `HUBCAT_CONFIG`),
    /// e.g. one mounted read-only into a container.
    config: Option<PathBuf>,
}

/// What `hubcat init` was asked for.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub name: String,
    pub country: String,
    pub api: Option<String>,
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir {
            root: root.into(),
            config: None,
        }
    }

    /// Read the configuration from `path` instead of DIR/hubcat.toml (`init` still writes
    /// its file in the directory).
    pub fn with_config(mut self, path: Option<PathBuf>) -> Self {
        self.config = path;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The configuration file the node reads.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| self.root.join(CONFIG_FILE))
    }
    pub fn key_path(&self) -> PathBuf {
        self.root.join("hub.key")
    }
    /// The hub's did when it signs with a key other than its own (after a key handover).
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("hub.did")
    }
    /// A new key being handed over to, before the handover is durable.
    pub fn next_key_path(&self) -> PathBuf {
        self.root.join("hub.key.next")
    }
    pub fn token_path(&self) -> PathBuf {
        self.root.join("api.token")
    }
    pub fn addr_path(&self) -> PathBuf {
        self.root.join("api.addr")
    }
    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Create the hub: key (0600), API token (0600) and config file. Refuses an existing hub.
    pub fn init(&self, opts: &InitOptions) -> Result<HubKey, DataDirError> {
        if opts.name.trim().is_empty() || opts.name.chars().count() > 120 {
            return Err(DataDirError::Invalid {
                field: "--name".into(),
                detail: "must be 1-120 characters".into(),
            });
        }
        if !hubcat_protocol::vocab::is_country(&opts.country) {
            return Err(DataDirError::Invalid {
                field: "--country".into(),
                detail: format!(
                    "`{}` is not an ISO 3166-1 alpha-2 country code (SE, ES, GR …)",
                    opts.country
                ),
            });
        }
        if self.key_path().exists() {
            return Err(DataDirError::AlreadyInitialised(
                self.root.display().to_string(),
            ));
        }
        let mut flags: Vec<(&'static str, toml::Value)> = vec![
            ("hub.name", toml::Value::String(opts.name.clone())),
            ("hub.country", toml::Value::String(opts.country.clone())),
        ];
        flags.extend(addr_flags(
            opts.api.as_deref(),
            &opts.listen,
            &opts.bootstrap,
        ));
        // Validate the values as the node will read them before writing anything.
        hubcat_config::resolve(&Sources {
            flags: flags.clone(),
            ..Default::default()
        })?;

        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let key = HubKey::generate()
            .map_err(|e| DataDirError::BadKey("(new key)".into(), e.to_string()))?;
        write_private(&self.key_path(), key_text(&key).as_bytes(), true)?;

        let mut token = [0u8; 32];
        getrandom::fill(&mut token).map_err(|e| DataDirError::Io {
            path: "random source".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        write_private(
            &self.token_path(),
            format!("{}\n", hex::encode(token)).as_bytes(),
            false,
        )?;

        let mut table = toml::Table::new();
        for (key, value) in flags {
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .map(|t| t.insert(name.to_owned(), value));
        }
        let text = format!(
            "# hubcat node configuration, written by `hubcat init`.\n# Every option: config/hubcat.example.toml or `hubcat config example`.\n\n{}",
            toml::to_string(&table).unwrap_or_default()
        );
        write_private(&self.root.join(CONFIG_FILE), text.as_bytes(), false)?;
        Ok(key)
    }

    /// Load the hub key, refusing a key file others can read.
    pub fn load_key(&self) -> Result<HubKey, DataDirError> {
        self.load_key_at(&self.key_path())
    }

    /// The hub this directory is (its did) and the key it signs with: the same key unless the
    /// federation handed the hub's signing over to another (`hub.did` names the hub then).
    pub fn load_identity(&self) -> Result<(HubId, HubKey), DataDirError> {
        let key = self.load_key()?;
        let path = self.identity_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let hub = HubId::from_did(text.trim()).map_err(|e| DataDirError::Invalid {
                    field: path.display().to_string(),
                    detail: format!("not a hub did: {e}"),
                })?;
                Ok((hub, key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((key.id(), key)),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Make this directory sign for `hub` (a hub that lost its key: its members recover it to
    /// this directory's new key). Refuses a directory that already names a hub.
    pub fn set_identity(&self, hub: &HubId) -> Result<(), DataDirError> {
        write_private(
            &self.identity_path(),
            format!("{}\n", hub.to_did()).as_bytes(),
            true,
        )
    }

    /// A key written to `hub.key.next` (0600) and not yet handed over to, if any.
    pub fn load_next_key(&self) -> Result<Option<HubKey>, DataDirError> {
        let path = self.next_key_path();
        if !path.exists() {
            return Ok(None);
        }
        self.load_key_at(&path).map(Some)
    }

    /// Write `key` to `hub.key.next` (0600, durable) before the handover to it is signed, so a
    /// crash in between never loses the key the federation hands over to.
    pub fn write_next_key(&self, key: &HubKey) -> Result<(), DataDirError> {
        let path = self.next_key_path();
        let _ = fs::remove_file(&path);
        write_private(&path, key_text(key).as_bytes(), true)
    }

    /// Make `hub.key.next` the hub's key (after the handover to it is durable): `hub.did`
    /// keeps naming the hub, then the new key replaces the old one in one rename.
    pub fn install_next_key(&self, hub: &HubId) -> Result<(), DataDirError> {
        let id = self.identity_path();
        if !id.exists() {
            write_private(&id, format!("{}\n", hub.to_did()).as_bytes(), false)?;
        }
        let next = self.next_key_path();
        fs::rename(&next, self.key_path()).map_err(io(&next))
    }

    /// Forget a `hub.key.next` whose handover did not happen.
    pub fn discard_next_key(&self) -> Result<(), DataDirError> {
        let path = self.next_key_path();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    fn load_key_at(&self, path: &Path) -> Result<HubKey, DataDirError> {
        let path = path.to_path_buf();
        let meta = fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataDirError::NotInitialised(self.root.display().to_string())
            } else {
                io(&path)(e)
            }
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DataDirError::KeyPermissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(fs::read_to_string(&path).map_err(io(&path))?);
        let shown = path.display().to_string();
        let mut lines = text.lines();
        if lines.next() != Some(KEY_HEADER) {
            return Err(DataDirError::BadKey(
                shown,
                format!("first line is not `{KEY_HEADER}`"),
            ));
        }
        let secret = zeroize::Zeroizing::new(
            hex::decode(lines.next().unwrap_or("").trim())
                .map_err(|_| DataDirError::BadKey(shown.clone(), "secret is not hex".into()))?,
        );
        HubKey::from_secret_bytes(&secret).map_err(|e| DataDirError::BadKey(shown, e.to_string()))
    }

    pub fn load_token(&self) -> Result<String, DataDirError> {
        let path = self.token_path();
        Ok(fs::read_to_string(&path)
            .map_err(io(&path))?
            .trim()
            .to_owned())
    }

    /// Resolve the configuration from this directory's file, the environment and flags.
    pub fn load_config(
        &self,
        env: BTreeMap<String, String>,
        flags: Vec<(&'static str, toml::Value)>,
    ) -> Result<Resolved, DataDirError> {
        let path = self.config_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => Some(t),
            // A file named explicitly must exist; the directory's own file is optional.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.config.is_none() => None,
            Err(e) => return Err(io(&path)(e)),
        };
        let name = path.display().to_string();
        Ok(hubcat_config::resolve(&Sources {
            file: text.as_deref().map(|t| (t, name.as_str())),
            env,
            flags,
        })?)
    }

    /// Record the running node's API address, for CLI commands on this directory.
    pub fn write_api_addr(&self, addr: &std::net::SocketAddr) -> Result<(), DataDirError> {
        let path = self.addr_path();
        fs::write(&path, format!("{addr}\n")).map_err(io(&path))
    }

    pub fn read_api_addr(&self) -> Option<std::net::SocketAddr> {
        fs::read_to_string(self.addr_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn remove_api_addr(&self) {
        let _ = fs::remove_file(self.addr_path());
    }
}

/// Write a file readable only by its owner. `create_new` refuses to replace an existing file.
/// A key file's text: the header line, then the secret in hex.
fn key_text(key: &HubKey) -> zeroize::Zeroizing<String> {
    let secret = key.secret_bytes();
    let mut text = zeroize::Zeroizing::new(format!("{KEY_HEADER}\n"));
    text.push_str(&hex::encode(secret.as_ref()));
    text.push('\n');
    text
}

fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<(), DataDirError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_files_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::new(dir.path().join("hub"));
        let opts = InitOptions {
            name: "HDS".into(),
            country: "SE".into(),
            ..Default::default()
        };
        let key = dd.init(&opts).expect("init");
        for p in [dd.key_path(), dd.token_path()] {
            let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert_eq!(dd.load_key().expect("key").id(), key.id());
        assert!(matches!(
            dd.init(&opts),
            Err(DataDirError::AlreadyInitialised(_))
        ));
        let cfg = dd.load_config(BTreeMap::new(), vec![]).expect("config");
        assert_eq!(cfg.config.hub.name, "HDS");

        fs::set_permissions(dd.key_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = dd.load_key().expect_err("0644 refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn init_refuses_bad_country_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::new(dir.path().join("hub"));
        let err = dd
            .init(&InitOptions {
                name: "HDS".into(),
                country: "Sweden".into(),
                ..Default::default()
            })
            .expect_err("refused");
        assert!(err.to_string().contains("--country"));
        assert!(!dd.key_path().exists());
    }
}
