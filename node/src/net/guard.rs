//! What a node does about peers that misbehave: per-peer rate limits on gossip and sync,
//! a score that every refused input lowers, graylisting (gossipsub ignores the peer's
//! messages and we refuse its sync requests) and banning (every connection refused for a
//! while).
//!
//! | offence | cost |
//! |---|---|
//! | a change that fails verification (forged, altered, unauthorised, from the future …) | [`PENALTY`] per change |
//! | an undecodable or oversized message | [`PENALTY`] |
//! | a gossip message or sync request above the peer's rate | [`PENALTY`] |
//! | a sync request while graylisted | [`PENALTY`] |
//!
//! A peer whose score falls to [`GRAYLIST_SCORE`] is graylisted — gossipsub's own threshold,
//! since our score is its application score — and at [`BAN_SCORE`] it is banned for
//! [`BAN_FOR`]. A score recovers by one offence a minute ([`RECOVER_EVERY`]), so an honest
//! peer that erred (a clock running fast, say) is heard again once it stops. Changes by hubs
//! that are not members (yet) cost nothing: an honest peer relays them before it learns the
//! membership, and they are held, not applied (see `engine::members`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;

/// Score lost per offence.
pub const PENALTY: f64 = 10.0;
/// At or below this score a peer is graylisted (gossipsub's default graylist threshold).
pub const GRAYLIST_SCORE: f64 = -80.0;
/// At or below this score a peer is banned.
pub const BAN_SCORE: f64 = -400.0;
/// How long a ban lasts; the peer starts again from a score just above the graylist.
pub const BAN_FOR: Duration = Duration::from_secs(600);
/// A score regains one offence's [`PENALTY`] per this long, up to 0.
pub const RECOVER_EVERY: Duration = Duration::from_secs(60);
/// Gossip messages a peer may send per second, and in a burst (a hub importing its
/// catalogue announces a few hundred changes a second, grouped by document).
const GOSSIP_PER_SEC: u32 = 500;
const GOSSIP_BURST: u32 = 5_000;
/// Sync requests a peer may send per second, and in a burst (a session sends a few).
const REQUESTS_PER_SEC: u32 = 50;
const REQUESTS_BURST: u32 = 200;

/// Rate limits and scores of the peers, shared by the network task and the message handlers.
pub struct Guard {
    gossip: DefaultKeyedRateLimiter<PeerId>,
    requests: DefaultKeyedRateLimiter<PeerId>,
    scores: Mutex<HashMap<PeerId, Standing>>,
}

#[derive(Debug, Clone, Copy)]
struct Standing {
    score: f64,
    /// When `score` was last brought up to date.
    at: Instant,
    offences: u64,
    banned_until: Option<Instant>,
}

impl Standing {
    fn new() -> Self {
        Standing {
            score: 0.0,
            at: Instant::now(),
            offences: 0,
            banned_until: None,
        }
    }

    /// The score now, with the offences forgiven since it was last brought up to date.
    fn recover(&mut self, now: Instant) -> f64 {
        let periods = (now.saturating_duration_since(self.at).as_secs() / RECOVER_EVERY.as_secs())
            .min(u32::MAX as u64) as u32;
        if periods > 0 {
            self.score = (self.score + PENALTY * f64::from(periods)).min(0.0);
            self.at += RECOVER_EVERY * periods;
        }
        self.score
    }
}

/// What a penalty did to a peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub score: f64,
    /// The penalty took the peer to the ban score just now.
    pub ban: bool,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    // Both constants are above zero.
    Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Guard {
    pub fn new() -> Self {
        Guard {
            gossip: RateLimiter::keyed(quota(GOSSIP_PER_SEC, GOSSIP_BURST)),
            requests: RateLimiter::keyed(quota(REQUESTS_PER_SEC, REQUESTS_BURST)),
            scores: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Standing>> {
        // Plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.scores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May `peer` send one more gossip message now?
    pub fn gossip_allowed(&self, peer: &PeerId) -> bool {
        self.gossip.check_key(peer).is_ok()
    }

    /// May `peer` send one more sync request now?
    pub fn request_allowed(&self, peer: &PeerId) -> bool {
        self.requests.check_key(peer).is_ok()
    }

    /// Lower `peer`'s score for `offences` offences.
    pub fn penalise(&self, peer: PeerId, offences: usize) -> Verdict {
        let mut scores = self.lock();
        let s = scores.entry(peer).or_insert_with(Standing::new);
        let before = s.recover(Instant::now());
        s.score -= PENALTY * offences as f64;
        s.offences += offences as u64;
        let ban = before > BAN_SCORE && s.score <= BAN_SCORE;
        if ban {
            s.banned_until = Some(Instant::now() + BAN_FOR);
        }
        Verdict {
            score: s.score,
            ban,
        }
    }

    /// The peer's score (0 for a peer that never offended).
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.lock()
            .get_mut(peer)
            .map_or(0.0, |s| s.recover(Instant::now()))
    }

    /// Offences counted against the peer.
    pub fn offences(&self, peer: &PeerId) -> u64 {
        self.lock().get(peer).map_or(0, |s| s.offences)
    }

    /// Whether we ignore the peer's messages and refuse its requests.
    pub fn is_graylisted(&self, peer: &PeerId) -> bool {
        self.score(peer) <= GRAYLIST_SCORE
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.lock()
            .get(peer)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| until > Instant::now())
    }

    /// Peers whose ban ended: they start again just above the graylist.
    pub fn expired_bans(&self) -> Vec<PeerId> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (peer, s) in self.lock().iter_mut() {
            if s.banned_until.is_some_and(|until| until <= now) {
                s.banned_until = None;
                s.score = GRAYLIST_SCORE + PENALTY;
                s.at = now;
                out.push(*peer);
            }
        }
        self.gossip.retain_recent();
        self.requests.retain_recent();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offences_graylist_then_ban_a_peer_and_leave_others_alone() {
        let guard = Guard::new();
        let bad = PeerId::random();
        let good = PeerId::random();
        let to_graylist = (-GRAYLIST_SCORE / PENALTY) as usize;
        let v = guard.penalise(bad, to_graylist - 1);
        assert!(!guard.is_graylisted(&bad) && !v.ban);
        guard.penalise(bad, 1);
        assert!(guard.is_graylisted(&bad));
        let to_ban = ((GRAYLIST_SCORE - BAN_SCORE) / PENALTY) as usize;
        let v = guard.penalise(bad, to_ban);
        assert!(v.ban && guard.is_banned(&bad));
        // Only the crossing is a ban; later offences do not ban again.
        assert!(!guard.penalise(bad, 1).ban);
        assert!(!guard.is_graylisted(&good) && !guard.is_banned(&good));
        assert_eq!(guard.offences(&bad), (to_graylist + to_ban + 1) as u64);
    }

    #[test]
    fn a_score_recovers_one_offence_a_minute_and_never_above_zero() {
        let mut s = Standing::new();
        s.score = GRAYLIST_SCORE;
        let start = s.at;
        assert_eq!(s.recover(start + Duration::from_secs(59)), GRAYLIST_SCORE);
        assert_eq!(
            s.recover(start + Duration::from_secs(61)),
            GRAYLIST_SCORE + PENALTY
        );
        assert_eq!(s.recover(start + Duration::from_secs(3600)), 0.0);
    }

    #[test]
    fn a_flood_is_cut_at_the_burst_per_peer() {
        let guard = Guard::new();
        let flooder = PeerId::random();
        let allowed = (0..REQUESTS_BURST * 2)
            .filter(|_| guard.request_allowed(&flooder))
            .count();
        // The burst, plus what the rate refilled while the loop ran.
        assert!(allowed >= REQUESTS_BURST as usize && allowed < (REQUESTS_BURST * 2) as usize);
        assert!(
            guard.request_allowed(&PeerId::random()),
            "others are not limited"
        );
    }
}
