//! Starting and stopping a node: open the store, rebuild the catalogue, join the network,
//! serve the API.
//! `hubcat run`, the demo and the in-process test clusters all go through [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hubcat_config::Config;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use crate::datadir::DataDir;
use crate::engine::{Catalogue, Rules};
use crate::metrics::Metrics;
use crate::net::{self, NetConfig, NetHandle};
use crate::search::SearchIndex;
use crate::store::SledStore;

/// A running node. Dropping it without [`RunningNode::shutdown`] stops nothing cleanly.
pub struct RunningNode {
    pub api_addr: SocketAddr,
    pub catalogue: Arc<Catalogue>,
    /// The network; `None` when `p2p.listen` is empty and no bootstrap peer is set.
    pub net: Option<NetHandle>,
    /// The search index, kept current by `search_task`.
    pub search: Arc<SearchIndex>,
    search_task: tokio::task::JoinHandle<()>,
    net_task: Option<tokio::task::JoinHandle<()>>,
    data_dir: DataDir,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    propagation: tokio::task::JoinHandle<()>,
}

/// How long a stop may take in all (`docker stop` and systemd wait 10 s by default before
/// they kill): in-flight API requests get most of it, peers the rest.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);
const API_DRAIN: Duration = Duration::from_secs(5);
const NET_CLOSE: Duration = Duration::from_secs(2);

/// Open the node in `data_dir` with `config` and start serving.
pub async fn start(data_dir: &DataDir, config: &Config) -> anyhow::Result<RunningNode> {
    let (hub, key) = data_dir.load_identity()?;
    let next_key = data_dir.load_next_key()?;
    let mut net_config = NetConfig::from_config(config)?;
    let rules = match crate::federation::load(data_dir)? {
        Some((genesis, id)) => {
            tracing::info!(federation = %id, name = %genesis.name, quorum = genesis.quorum, "member of a federation genesis");
            net_config.federation = id.clone();
            Some(Rules::from_genesis(&genesis, &id))
        }
        None => None,
    };
    let token = data_dir.load_token()?;
    let store_path = data_dir.store_path();
    let catalogue = tokio::task::spawn_blocking(move || -> anyhow::Result<Catalogue> {
        let store = SledStore::open(&store_path)?;
        Ok(Catalogue::open_as(Arc::new(store), hub, key, rules)?)
    })
    .await??;
    // A key handover interrupted between signing it and installing the new key file: finish
    // it if the federation records it, else forget the unused key.
    if let Some(next) = next_key {
        if catalogue.current_key_of(&hub) == next.id() {
            tracing::warn!(key = %next.id(), "finishing an interrupted key handover");
            catalogue.use_key(next)?;
            data_dir.install_next_key(&hub)?;
        } else {
            data_dir.discard_next_key()?;
        }
    }
    let net_key = net::keypair(&catalogue.signing_key())?;
    let catalogue = Arc::new(catalogue);
    let search = {
        let catalogue = catalogue.clone();
        let stale_after_days = config.catalogue.stale_after_days;
        let started = Instant::now();
        let index =
            tokio::task::spawn_blocking(move || SearchIndex::open(catalogue, stale_after_days))
                .await??;
        tracing::info!(
            records = index.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "search index built"
        );
        Arc::new(index)
    };
    let search_task = search.spawn_updater();
    let needs_peer = net_config.has_bootstrap();
    let (net, net_task) = if net_config.listen.is_empty() && !net_config.has_bootstrap() {
        (None, None)
    } else {
        let (handle, task) = net::spawn(net_key, catalogue.clone(), net_config).await?;
        (Some(handle), Some(task))
    };

    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    data_dir.write_api_addr(&api_addr)?;

    let state = ApiState {
        catalogue: catalogue.clone(),
        token: Arc::new(token),
        hub_name: Arc::new(config.hub.name.clone()),
        started: Instant::now(),
        net: net.clone(),
        search: search.clone(),
        data_dir: Arc::new(data_dir.clone()),
    };
    let metrics = Arc::new(Metrics::new());
    let propagation = crate::metrics::spawn_propagation(metrics.clone(), &catalogue);
    let ops = crate::ops::OpsState {
        catalogue: catalogue.clone(),
        net: net.clone(),
        needs_peer,
        metrics: metrics.clone(),
    };
    let limits = api::limits::Limits::new(&config.api, state.token.clone());
    let app = api::router(state, config.api.max_body_bytes as usize)
        .merge(crate::ops::router(ops))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            api::limits::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track_requests,
        ));
    let (shutdown, mut rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        // The client's address is what the read rate limit counts by.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    tracing::info!(
        did = %catalogue.hub_id(),
        api = %api_addr,
        records = catalogue.record_count(),
        "node started"
    );
    Ok(RunningNode {
        api_addr,
        catalogue,
        net,
        search,
        search_task,
        net_task,
        data_dir: data_dir.clone(),
        shutdown,
        server,
        propagation,
    })
}

impl RunningNode {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Stop accepting requests, let in-flight ones finish, close peers, snapshot and flush
    /// the store. Bounded: the API gets [`API_DRAIN`] and the network [`NET_CLOSE`]; every
    /// acknowledged write is already durable, so what is cut short is only unacknowledged.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let _ = self.shutdown.send(true);
        match tokio::time::timeout(API_DRAIN, self.server).await {
            Ok(joined) => joined??,
            Err(_) => tracing::warn!(
                "API requests still running after {API_DRAIN:?}; closing anyway (their writes were not acknowledged)"
            ),
        }
        self.propagation.abort();
        if let Some(net) = &self.net {
            if tokio::time::timeout(NET_CLOSE, net.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("network did not stop within {NET_CLOSE:?}");
            }
        }
        // The updater holds the index, which holds the catalogue and so the store's lock:
        // wait until the aborted task is gone, so a restart can open the store again.
        self.search_task.abort();
        let _ = self.search_task.await;
        // The network task holds the catalogue too: wait until it is gone, not only told to go.
        if let Some(task) = self.net_task {
            task.abort();
            let _ = task.await;
        }
        let catalogue = self.catalogue.clone();
        tokio::task::spawn_blocking(move || catalogue.snapshot()).await??;
        self.data_dir.remove_api_addr();
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "node stopped"
        );
        Ok(())
    }
}

/// Wait for SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
