//! Test support only. [`Sink`] is a real SMTP server on loopback that records
//! every message with the peer address it came from and the EHLO name it was
//! greeted with, answers as a test script says, and counts concurrent
//! connections per peer, so tests can check which source sent what.

mod disk;
mod dns;
mod redis;
mod sink;

pub use disk::SmallDisk;
pub use dns::{DnsServer, Zone};
pub use redis::RedisServer;
pub use sink::{Received, ReplyScript, Sink};

/// Poll `check` until it holds or `timeout` passes; returns its last value.
pub async fn eventually(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
