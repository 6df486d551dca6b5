//! hubcat-node: the `hubcat` binary's library.
//!
//! - [`store`]: durable storage (sled) behind a small trait;
//! - [`engine`]: the catalogue: per-hub Automerge documents fed by verified signed changes,
//!   and the materialised view queries read;
//! - [`datadir`]: a node's data directory (config, key, token, store);
//! - [`net`]: the libp2p network task, gossip and anti-entropy sync;
//! - [`api`]: the HTTP JSON API, described by [`openapi`] (served at `/openapi.json`);
//! - [`import`] / [`export`]: bulk import (JSON, JSON lines, CSV) and exports (JSON, CSV,
//!   DCAT-AP JSON-LD);
//! - [`node`]: starting and stopping a node (used by `hubcat run`, the demo and the tests);
//! - [`cli`]: the `hubcat` command line and its HTTP client.
pub mod api;
pub mod cli;
pub mod datadir;
pub mod demo;
pub mod engine;
pub mod export;
pub mod import;
pub mod net;
pub mod node;
pub mod openapi;
pub mod store;
