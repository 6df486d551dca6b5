//! A limit on the number of *peers*, not connections.
//!
//! libp2p's `connection_limits` counts connections. Two hubs that dial each other at the same
//! time hold two connections, so a connection cap fills with duplicates and refuses new hubs:
//! a ten-hub federation with a small cap split into groups that never met. This behaviour
//! refuses a connection only when it would add a peer beyond `max_peers`; further connections
//! to a peer already connected are always allowed (their number per peer is bounded by
//! `connection_limits`), and so are the configured bootstrap peers, so a hub can always reach
//! the federation it was told to join.
//!
//! It also spends each remote address's budget of new inbound connections before their
//! handshake (see [`super::inbound`]).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::inbound::{self, InboundBudget};

/// The refusal, as the swarm reports it in its connection error events.
#[derive(Debug, thiserror::Error)]
#[error("peer limit reached: {max} peers connected")]
pub struct PeerLimitReached {
    pub max: usize,
}

pub struct PeerLimit {
    max_peers: usize,
    /// Always admitted (the configured bootstrap peers).
    always: HashSet<PeerId>,
    /// Established connections per connected peer.
    connected: HashMap<PeerId, usize>,
    /// New inbound connections per remote address, spent before the handshake.
    inbound: InboundBudget,
}

impl PeerLimit {
    /// `inbound_refused` counts the inbound connections dropped before their handshake.
    pub fn new(
        max_peers: usize,
        always: impl IntoIterator<Item = PeerId>,
        inbound_refused: Arc<AtomicU64>,
    ) -> Self {
        PeerLimit {
            max_peers,
            always: always.into_iter().collect(),
            connected: HashMap::new(),
            inbound: InboundBudget::new(inbound_refused),
        }
    }

    fn admit(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.connected.contains_key(peer)
            || self.always.contains(peer)
            || self.connected.len() < self.max_peers
        {
            Ok(())
        } else {
            Err(ConnectionDenied::new(PeerLimitReached {
                max: self.max_peers,
            }))
        }
    }
}

impl NetworkBehaviour for PeerLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = inbound::ip_of(remote) else {
            return Ok(());
        };
        self.inbound.spend(ip, Instant::now()).map_err(|e| {
            tracing::debug!(%ip, "inbound connection dropped before its handshake");
            ConnectionDenied::new(e)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.connected.entry(e.peer_id).or_default() += 1;
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, .. }) => {
                if let Some(n) = self.connected.get_mut(&peer_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.connected.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_peers_beyond_the_limit_are_refused() {
        let boot = PeerId::random();
        let mut limit = PeerLimit::new(2, [boot], Arc::default());
        let a = PeerId::random();
        let b = PeerId::random();
        let c = PeerId::random();
        assert!(limit.admit(&a).is_ok());
        limit.connected.insert(a, 1);
        limit.connected.insert(b, 1);
        // A second connection to a connected peer is not a new peer.
        assert!(limit.admit(&a).is_ok());
        // A third peer is one too many, but a bootstrap peer is always admitted.
        assert!(limit.admit(&c).is_err());
        assert!(limit.admit(&boot).is_ok());
    }
}
