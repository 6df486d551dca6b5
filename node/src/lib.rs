//! hubcat-node: the `hubcat` binary's library.
//!
//! - [`store`]: durable storage (sled) behind a small trait;
//! - [`engine`]: the catalogue: per-hub Automerge documents fed by verified signed changes,
//!   and the materialised view queries read;
//! - [`datadir`]: a node's data directory (config, key, token, store);
//! - [`federation`]: the federation's genesis in the data directory, `hubcat federation …`;
//! - [`net`]: the libp2p network task, gossip and anti-entropy sync;
//! - [`search`]: the search index over the whole catalogue (tantivy, in RAM, kept current
//!   with the engine's changed records), gap analysis, duplicates and matchmaking;
//! - [`api`]: the HTTP JSON API, described by [`openapi`] (served at `/openapi.json`);
//! - [`import`] / [`export`]: bulk import (JSON, JSON lines, CSV) and exports (JSON, CSV,
//!   DCAT-AP JSON-LD);
//! - [`node`]: starting and stopping a node (used by `hubcat run`, the demo and the tests);
//! - [`metrics`]: Prometheus metrics; [`ops`]: readiness, `hubcat health`, first start in a
//!   container; [`backup`]: consistent backups and restores with a new actor;
//! - [`cli`]: the `hubcat` command line and its HTTP client.
pub mod api;
pub mod backup;
pub mod cli;
pub mod datadir;
pub mod demo;
pub mod engine;
pub mod export;
pub mod federation;
pub mod import;
pub mod metrics;
pub mod net;
pub mod node;
pub mod openapi;
pub mod ops;
pub mod search;
pub mod store;
