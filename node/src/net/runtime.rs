//! Peer work runs below the node's own users.
//!
//! Everything a peer makes the node do — Noise handshakes, frames, gossip, sync sessions,
//! and verifying and storing the changes it sends (see [`super::ingest`]) — runs on threads
//! with nice value [`PEER_NICE`], the lowest priority: when the cores are busy, the scheduler
//! gives those threads about 1.5 % of the share of a thread at the default priority (the HTTP
//! API, the node's own publishing), so a hostile peer sending as fast as it can slows queries
//! little; when the cores are idle, peer work runs at full speed. The cost: while something
//! else keeps every core busy, the node falls behind its peers, and catches up by sync when the
//! load eases. Raising a nice value needs no privilege.
//!
//! Nice 19 rather than 10: in the adversary bench (BENCHMARKS.md, "adversary") the honest
//! search's p99 under attack was 0.76–1.11 ms at 19 (four runs, three at most 0.88) against
//! 1.07–1.13 ms at 10 (quiet 0.45–0.64), with propagation at 20 nodes unchanged (p99 172 ms).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Nice value of the threads doing peer work (0 is the default, 19 the lowest priority).
pub(crate) const PEER_NICE: i32 = 19;

/// Give the calling thread nice value [`PEER_NICE`] (Linux: a thread's nice value is its own,
/// and threads it starts inherit it), unless it already runs at that priority or lower (a
/// service manager may start the whole node with a higher nice value). `what` names the
/// thread in the warning when that fails.
pub(crate) fn lower_priority(what: &str) {
    // SAFETY: gettid, getpriority and setpriority only read their integer arguments and read
    // or set the calling thread's scheduling priority; errno is the calling thread's own.
    let result = unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        // getpriority may return -1 as a nice value: errno tells an error apart.
        if *libc::__errno_location() == 0 && current >= PEER_NICE {
            return;
        }
        libc::setpriority(libc::PRIO_PROCESS, tid, PEER_NICE)
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of the {what} thread; it runs at normal priority"
        );
    }
}

/// How long dropping the network's runtime waits for its blocking work to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// The runtime the swarm and every task it starts run on, its threads at [`PEER_NICE`].
/// Dropping it stops them and returns once their tasks are gone (blocking work: within
/// [`SHUTDOWN_WAIT`]): those tasks hold the catalogue, and with it the store's lock, which a
/// restart or a restore must be able to take as soon as the node has stopped.
pub(crate) struct NetRuntime(Option<tokio::runtime::Runtime>);

impl NetRuntime {
    pub(crate) fn new() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name_fn(|| {
                static N: AtomicUsize = AtomicUsize::new(0);
                format!("hubcat-net-{}", N.fetch_add(1, Ordering::Relaxed))
            })
            .on_thread_start(|| lower_priority("network"))
            .enable_all()
            .build()?;
        Ok(NetRuntime(Some(runtime)))
    }

    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle())
    }
}

impl Drop for NetRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // A runtime may not be shut down and waited for from inside another one (this is
            // dropped from the node's runtime): wait on a thread of its own.
            let (hand_over, take) = std::sync::mpsc::channel::<tokio::runtime::Runtime>();
            let stopping = std::thread::Builder::new()
                .name("hubcat-net-stop".into())
                .spawn(move || {
                    if let Ok(runtime) = take.recv() {
                        runtime.shutdown_timeout(SHUTDOWN_WAIT);
                    }
                });
            match stopping {
                Ok(thread) => {
                    if let Err(back) = hand_over.send(runtime) {
                        back.0.shutdown_background();
                    }
                    let _ = thread.join();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for the network to stop");
                    runtime.shutdown_background();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn peer_work_runs_below_the_thread_that_started_the_network() {
        let ours = nice();
        let runtime = NetRuntime::new().expect("network runtime");
        let on = runtime.handle().expect("running").clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = tx.clone();
        on.spawn(async move {
            let _ = worker.send(("worker", nice()));
        });
        on.spawn(async move {
            let blocking = tokio::task::spawn_blocking(nice)
                .await
                .expect("blocking task");
            let _ = tx.send(("blocking", blocking));
        });
        let mut seen: Vec<(&str, i32)> = (0..2).map(|_| rx.recv().expect("answer")).collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("blocking", PEER_NICE.max(ours)),
                ("worker", PEER_NICE.max(ours))
            ]
        );
        assert_eq!(nice(), ours, "the caller's own priority is unchanged");
        drop(runtime);
    }
}
