//! Throttles and leases shared by two nodes through a real redis-server,
//! and what each node does on its own when Redis goes away.

use petrel_testkit::RedisServer;
use petrel_throttle::{Limiter, Mode, RedisConfig, ThrottleSpec};
use std::time::Duration;

fn spec(text: &str) -> ThrottleSpec {
    ThrottleSpec::parse(text).unwrap()
}

fn node(redis: &RedisServer, node_count: u32) -> Limiter {
    let limiter = Limiter::new();
    let config = RedisConfig {
        nodes: vec![redis.url()],
        node_count,
        lease_ttl: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    limiter.configure(Some(&config)).unwrap();
    limiter
}

#[tokio::test]
async fn two_nodes_pace_one_shared_rate() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, 2), node(&redis, 2));
    let paced = spec("10/s").paced();
    let mut waits = Vec::new();
    for i in 0..20 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        waits.push(limiter.reserve("path:src->site", &paced).await);
    }
    assert_eq!(a.mode(), Mode::Shared);
    // One queue of slots for both: the twentieth waits ~1.9 s, not ~0.9 s.
    let last = *waits.last().unwrap();
    assert!(last >= Duration::from_millis(1800) && last <= Duration::from_millis(2000), "{waits:?}");
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "slots in arrival order: {waits:?}");
    // A local: throttle is never shared.
    let local = spec("local:10/s").paced();
    for _ in 0..5 {
        a.reserve("local-one", &local).await;
    }
    assert!(b.reserve("local-one", &local).await.is_zero());
}

#[tokio::test]
async fn check_counts_only_what_it_allows() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, 2), node(&redis, 2));
    let three = spec("3/minute");
    assert!(!a.check("t", &three).await.throttled);
    assert!(!b.check("t", &three).await.throttled);
    let third = a.check("t", &three).await;
    assert_eq!((third.throttled, third.remaining, third.limit), (false, 0, 3));
    let refused = b.check("t", &three).await;
    assert!(refused.throttled);
    let retry = refused.retry_after.unwrap();
    assert!(retry > Duration::from_secs(19) && retry <= Duration::from_secs(20), "{retry:?}");
    assert!(a.check("t", &three).await.throttled, "a refusal is not counted, nor does it reset");
}

#[tokio::test]
async fn connection_leases_are_shared_and_freed() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, 2), node(&redis, 2));
    let l1 = a.lease("conn:src->site", 3).await.expect("first");
    let _l2 = b.lease("conn:src->site", 3).await.expect("second");
    let _l3 = a.lease("conn:src->site", 3).await.expect("third");
    assert!(b.lease("conn:src->site", 3).await.is_none(), "three in all");
    assert!(a.lease("conn:src->site", 3).await.is_none());
    assert_eq!(a.held("conn:src->site"), 2);
    drop(l1);
    let mut freed = None;
    for _ in 0..50 {
        freed = b.lease("conn:src->site", 3).await;
        if freed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed.is_some(), "a dropped lease frees its slot");
}

#[test]
fn a_dead_nodes_leases_expire() {
    let redis = RedisServer::start();
    // The node lives in its own runtime; shutting that down ends its
    // renewals without releasing anything, as a crash would.
    let dead = tokio::runtime::Runtime::new().unwrap();
    dead.block_on(async {
        let a = node(&redis, 2);
        for _ in 0..3 {
            std::mem::forget(a.lease("conn:x", 3).await.expect("granted"));
        }
        std::mem::forget(a);
    });
    dead.shutdown_background();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = node(&redis, 2);
        assert!(b.lease("conn:x", 3).await.is_none(), "the dead node's leases still count");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(b.lease("conn:x", 3).await.is_some(), "and expire after the lease ttl");
    });
}

#[tokio::test]
async fn redis_down_means_this_nodes_share_then_back_to_shared() {
    let mut redis = RedisServer::start();
    let a = node(&redis, 2);
    let paced = spec("10/s").paced();
    assert!(a.reserve("r", &paced).await.is_zero());
    assert_eq!(a.mode(), Mode::Shared);
    redis.stop();
    // Half of 10/s: the fifth waits 0.8 s.
    let mut last = Duration::ZERO;
    for _ in 0..5 {
        last = a.reserve("r", &paced).await;
    }
    assert_eq!(a.mode(), Mode::Fallback);
    assert!(last >= Duration::from_millis(750) && last <= Duration::from_millis(850), "{last:?}");
    // Half of three connections, at least one.
    let held = a.lease("c", 3).await.expect("this node's share");
    assert!(a.lease("c", 3).await.is_none());
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = a.reserve("r2", &paced).await;
    assert!(back.is_zero());
    assert_eq!(a.mode(), Mode::Shared, "probed again and recovered");
    // The lease taken while Redis was gone has been written into it since:
    // another node sees two of three slots left, not three.
    let b = node(&redis, 2);
    let _two: Vec<_> = [b.lease("c", 3).await.expect("one"), b.lease("c", 3).await.expect("two")].into();
    assert!(b.lease("c", 3).await.is_none(), "the fallback lease counts in Redis now");
    drop(held);
    let mut freed = false;
    for _ in 0..50 {
        if let Some(lease) = b.lease("c", 3).await {
            drop(lease);
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "and is released from Redis when its connection closes");
}

#[tokio::test]
async fn a_redis_cluster_shares_throttles_and_leases_across_its_slots() {
    let cluster = RedisServer::cluster(3);
    let config =
        RedisConfig { nodes: cluster.iter().map(|n| n.url()).collect(), node_count: 2, ..RedisConfig::default() };
    let (a, b) = (Limiter::new(), Limiter::new());
    a.configure(Some(&config)).unwrap();
    b.configure(Some(&config)).unwrap();
    // Keys land on different shards; each one is still one limit.
    let paced = spec("10/s").paced();
    for key in ["path:a->x", "path:b->y", "path:c->z"] {
        let mut last = Duration::ZERO;
        for i in 0..10 {
            last = if i % 2 == 0 { a.reserve(key, &paced).await } else { b.reserve(key, &paced).await };
        }
        assert!(last >= Duration::from_millis(850) && last <= Duration::from_millis(950), "{key}: {last:?}");
    }
    assert_eq!(a.mode(), Mode::Shared);
    let _held = [a.lease("conn:k", 2).await.unwrap(), b.lease("conn:k", 2).await.unwrap()];
    assert!(a.lease("conn:k", 2).await.is_none(), "two leases in all, across both nodes");
}
