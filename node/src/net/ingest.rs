//! Verifying and storing what peers send, on one worker thread of lower CPU priority.
//!
//! A peer's changes cost a node CPU before it knows whether they are any good (signatures,
//! layout, records): a hostile peer sending forged changes as fast as it can, or an honest
//! one catching up after a long absence, could otherwise take every core from the API and the
//! node's own publishing. Peer input is therefore verified and stored by one thread, one batch
//! at a time, with a nice value of 10: when the cores are busy the scheduler gives it about a
//! tenth of a core's share against the API, and when they are idle it runs at full speed.

use std::sync::{Arc, Weak};

use hubcat_protocol::SignedChange;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Catalogue, EngineError, IngestReport};

/// Batches waiting for the worker before senders wait.
const QUEUE: usize = 64;
/// The worker's nice value (0 is the default, 19 the lowest priority).
const NICE: i32 = 10;

type Job = (
    Vec<SignedChange>,
    oneshot::Sender<Result<IngestReport, EngineError>>,
);

/// The handle to the worker; the worker stops when every handle is gone.
pub struct IngestWorker {
    tx: mpsc::Sender<Job>,
}

impl IngestWorker {
    pub fn spawn(catalogue: &Arc<Catalogue>) -> std::io::Result<Self> {
        // Weak: the worker must not keep the catalogue (and its store) open after the node
        // has stopped.
        let catalogue: Weak<Catalogue> = Arc::downgrade(catalogue);
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("hubcat-peer-ingest".into())
            .spawn(move || {
                lower_priority();
                while let Some((envelopes, reply)) = rx.blocking_recv() {
                    let Some(catalogue) = catalogue.upgrade() else {
                        break;
                    };
                    let report = catalogue.ingest(envelopes, hubcat_protocol::now_ms());
                    drop(catalogue);
                    // The asker may have given up (its request timed out): nothing to tell.
                    let _ = reply.send(report);
                }
            })?;
        Ok(IngestWorker { tx })
    }

    /// Verify and store `envelopes` (see [`Catalogue::ingest`]).
    pub async fn ingest(&self, envelopes: Vec<SignedChange>) -> anyhow::Result<IngestReport> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((envelopes, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the ingest worker has stopped"))?;
        Ok(answer
            .await
            .map_err(|_| anyhow::anyhow!("the ingest worker has stopped"))??)
    }
}

/// Give the calling thread nice value [`NICE`] (Linux: a thread's nice value is its own).
fn lower_priority() {
    // SAFETY: gettid and setpriority only read their integer arguments and set the calling
    // thread's scheduling priority; no memory is shared with the kernel.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of the peer-ingest thread; it runs at normal priority"
        );
    }
}
