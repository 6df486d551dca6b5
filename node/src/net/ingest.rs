//! Verifying and storing what peers send, on one worker thread of lower CPU priority.
//!
//! A peer's changes cost a node CPU before it knows whether they are any good (signatures,
//! layout, records): a hostile peer sending forged changes as fast as it can, or an honest
//! one catching up after a long absence, could otherwise take every core from the API and the
//! node's own publishing. Peer input is therefore verified and stored by one thread, one batch
//! at a time, at the lower CPU priority of all peer work (see [`super::runtime`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use hubcat_protocol::SignedChange;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Catalogue, EngineError, IngestReport};

/// Batches waiting for the worker before senders wait.
const QUEUE: usize = 64;

type Job = (
    Vec<SignedChange>,
    oneshot::Sender<Result<IngestReport, EngineError>>,
);

/// The handle to the worker. Dropping it stops the worker — batches still queued are not
/// taken in (their askers hear that the worker stopped) — and returns once the batch in hand
/// is done: the worker holds the catalogue, and with it the store's lock, while it works, and a
/// restart right after the node stops must be able to take that lock.
pub struct IngestWorker {
    tx: Option<mpsc::Sender<Job>>,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IngestWorker {
    pub fn spawn(catalogue: &Arc<Catalogue>) -> std::io::Result<Self> {
        // Weak: the worker must not keep the catalogue (and its store) open after the node
        // has stopped.
        let catalogue: Weak<Catalogue> = Arc::downgrade(catalogue);
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("hubcat-peer-ingest".into())
            .spawn(move || {
                super::runtime::lower_priority("peer-ingest");
                while let Some((envelopes, reply)) = rx.blocking_recv() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Some(catalogue) = catalogue.upgrade() else {
                        break;
                    };
                    let report = catalogue.ingest(envelopes, hubcat_protocol::now_ms());
                    drop(catalogue);
                    // The asker may have given up (its request timed out): nothing to tell.
                    let _ = reply.send(report);
                }
            })?;
        Ok(IngestWorker {
            tx: Some(tx),
            stopping,
            thread: Some(thread),
        })
    }

    /// Verify and store `envelopes` (see [`Catalogue::ingest`]).
    pub async fn ingest(&self, envelopes: Vec<SignedChange>) -> anyhow::Result<IngestReport> {
        let (reply, answer) = oneshot::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the ingest worker has stopped"))?;
        tx.send((envelopes, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the ingest worker has stopped"))?;
        Ok(answer
            .await
            .map_err(|_| anyhow::anyhow!("the ingest worker has stopped"))??)
    }
}

impl Drop for IngestWorker {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Closing the queue wakes a worker waiting for work.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
