//! What a listener remembers about client addresses across sessions: how
//! many sessions each has open, and its recent AUTH failures, so one
//! address can neither take every connection nor guess passwords at speed
//! by opening new sessions.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// AUTH failures older than this are forgotten.
const AUTH_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered before expired entries are swept.
const SWEEP_AT: usize = 100_000;

#[derive(Default)]
pub(crate) struct Peers {
    sessions: Mutex<HashMap<IpAddr, usize>>,
    auth_failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// One admitted session; the count drops when it ends.
pub(crate) struct PeerSession {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        let mut sessions = self.peers.sessions.lock();
        if let Some(n) = sessions.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                sessions.remove(&self.ip);
            }
        }
    }
}

impl Peers {
    /// Count a new session from `ip`, or refuse it when `limit` sessions
    /// from there are open already (`None`: no per-address limit).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limit: Option<usize>) -> Option<PeerSession> {
        let mut sessions = self.sessions.lock();
        let n = sessions.entry(ip).or_default();
        if limit.is_some_and(|limit| *n >= limit) {
            return None;
        }
        *n += 1;
        Some(PeerSession { peers: self.clone(), ip })
    }

    /// Recent AUTH failures from `ip`.
    pub fn auth_failures(&self, ip: IpAddr) -> u32 {
        match self.auth_failures.lock().get(&ip) {
            Some((n, last)) if last.elapsed() < AUTH_MEMORY => *n,
            _ => 0,
        }
    }

    /// Count one AUTH failure from `ip`; returns the recent total.
    pub fn auth_failed(&self, ip: IpAddr) -> u32 {
        let mut failures = self.auth_failures.lock();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, (_, last)| last.elapsed() < AUTH_MEMORY);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= AUTH_MEMORY {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = Instant::now();
        entry.0
    }
}

/// How long to wait before answering the `n`th failure: doubling from a
/// quarter second, at most eight seconds.
pub(crate) fn auth_delay(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << n.saturating_sub(1).min(5))).min(Duration::from_secs(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_per_address_are_bounded_and_released() {
        let peers = Arc::new(Peers::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = peers.admit(ip, Some(2)).unwrap();
        let _b = peers.admit(ip, Some(2)).unwrap();
        assert!(peers.admit(ip, Some(2)).is_none());
        assert!(peers.admit("192.0.2.2".parse().unwrap(), Some(2)).is_some(), "other addresses unaffected");
        drop(a);
        assert!(peers.admit(ip, Some(2)).is_some());
    }

    #[test]
    fn auth_delays_grow() {
        assert_eq!(auth_delay(1), Duration::from_millis(250));
        assert_eq!(auth_delay(3), Duration::from_secs(1));
        assert_eq!(auth_delay(40), Duration::from_secs(8));
        let peers = Peers::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(peers.auth_failed(ip), 1);
        assert_eq!(peers.auth_failed(ip), 2);
        assert_eq!(peers.auth_failures(ip), 2);
    }
}
