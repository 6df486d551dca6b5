//! A budget of new inbound connections per remote IP address, spent before the handshake.
//!
//! A peer's id is known only once the Noise handshake is done, so a banned peer is refused
//! after it — and each handshake costs the node several X25519 operations. A banned peer that
//! redials as fast as it can (every request it makes dials anew) would keep the node's peer
//! threads busy with handshakes of connections it then refuses. Each remote IP address has a
//! bucket of [`BURST`] new inbound connections, refilled at [`PER_SEC`] per second; a connection
//! beyond it is dropped before the handshake, at the cost of an `accept`. Established
//! connections are not affected, nor are the node's own dials; a federation starting up (every
//! hub dialling every other, several hubs behind one address) stays within the burst. The
//! [`super::peer_limit::PeerLimit`] behaviour spends the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// New inbound connections one address may open at once.
pub const BURST: f64 = 64.0;
/// New inbound connections per second one address may open after its burst.
pub const PER_SEC: f64 = 20.0;
/// Addresses tracked at most; beyond, addresses whose bucket is full are forgotten, and an
/// address that cannot be tracked is let through (the per-peer limits still apply).
const MAX_TRACKED: usize = 4_096;

/// The refusal, as the swarm reports it in its connection error events.
#[derive(Debug, thiserror::Error)]
#[error("{ip} opened more than {BURST} connections, {PER_SEC} per second after that")]
pub struct TooManyConnections {
    pub ip: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * PER_SEC).min(BURST);
        self.at = now;
    }
}

pub struct InboundBudget {
    buckets: HashMap<IpAddr, Bucket>,
    refused: Arc<AtomicU64>,
}

impl InboundBudget {
    /// `refused` counts the connections dropped before their handshake.
    pub fn new(refused: Arc<AtomicU64>) -> Self {
        InboundBudget {
            buckets: HashMap::new(),
            refused,
        }
    }

    /// Spend one connection of `ip`'s budget, or refuse it.
    pub fn spend(&mut self, ip: IpAddr, now: Instant) -> Result<(), TooManyConnections> {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED {
            self.buckets.retain(|_, b| {
                b.refill(now);
                b.tokens < BURST
            });
            if self.buckets.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        bucket.refill(now);
        if bucket.tokens < 1.0 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(TooManyConnections { ip });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// The IP address a multiaddr starts with, if any.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let refused = Arc::new(AtomicU64::new(0));
        let mut budget = InboundBudget::new(refused.clone());
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        for i in 0..BURST as usize {
            assert!(budget.spend(a, t0).is_ok(), "connection {i} of the burst");
        }
        let err = budget.spend(a, t0).expect_err("beyond the burst");
        assert!(err.to_string().contains("10.0.0.1"), "{err}");
        assert!(
            budget.spend(b, t0).is_ok(),
            "another address has its own bucket"
        );
        // After the time it takes to earn one and a half connections, one is allowed, not two.
        let t1 = t0 + Duration::from_secs_f64(1.5 / PER_SEC);
        assert!(budget.spend(a, t1).is_ok());
        assert!(budget.spend(a, t1).is_err());
        assert_eq!(refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn addresses_are_read_from_the_multiaddr() {
        let v4: Multiaddr = "/ip4/192.0.2.7/tcp/4001".parse().expect("addr");
        let v6: Multiaddr = "/ip6/2001:db8::1/tcp/4001".parse().expect("addr");
        let dns: Multiaddr = "/dns4/hub.example/tcp/4001".parse().expect("addr");
        assert_eq!(ip_of(&v4), Some([192, 0, 2, 7].into()));
        assert_eq!(ip_of(&v6), Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(ip_of(&dns), None);
    }
}
