//! Two daemons on one real redis-server share an egress path's
//! `max_message_rate` and `connection_limit`; with Redis gone mid-run each
//! keeps delivering at its share, and nothing is lost.

use petrel_e2e::{TestDaemon, Workspace, eventually, inject, smart_host_events};
use petrel_telemetry::RecordType;
use petrel_testkit::{RedisServer, Sink};
use std::time::{Duration, Instant};

/// Node `ip` of two: one source named alike on both (the limits' key is
/// source and site), each node binding its own address so the sink can
/// tell them apart.
fn node(ws: &Workspace, redis: &RedisServer, sink: &Sink, ip: &str) -> TestDaemon {
    let init = format!(
        "  kumo.configure_redis_throttles {{ node = '{}', node_count = 2 }}\n  \
         kumo.define_egress_source {{ name = 'ip-1', source_address = '{ip}' }}\n  \
         kumo.define_egress_pool {{ name = 'pool', entries = {{ {{ name = 'ip-1' }} }} }}",
        redis.url()
    );
    let events = format!(
        "{}\nkumo.on('get_egress_path_config', function(domain, source, site)\n  \
         return kumo.make_egress_path {{ max_message_rate = '10/s', connection_limit = 3, prohibited_hosts = {{}} }}\nend)",
        smart_host_events(sink.addr(), "egress_pool = 'pool', retry_interval = 1,")
    );
    TestDaemon::start(&ws.policy(&init, &events)).unwrap()
}

/// The most messages the sink saw within any two seconds (a window wide
/// enough that network jitter in single arrivals does not count as rate).
fn busiest_two_seconds(arrivals: &[Instant]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|t| t.duration_since(sorted[i]) < Duration::from_secs(2)).count())
        .max()
        .unwrap_or(0)
}

async fn load_both(a: &TestDaemon, b: &TestDaemon, each: usize) {
    let (sa, sb) = (a.smtp[0], b.smtp[0]);
    let to = |i: usize| ("s@sender.test".to_string(), format!("r{i}@shared.test"));
    let (ok_a, ok_b) = tokio::join!(inject(sa, each, 2, to), inject(sb, each, 2, move |i| to(i + 1000)));
    assert_eq!(ok_a + ok_b, 2 * each, "every message accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_rate_and_one_connection_limit() {
    let redis = RedisServer::start();
    let sink = Sink::start().await;
    // Slow answers keep connections open, so the connection limit binds.
    sink.set_reply_delay(Duration::from_millis(250));
    let (wa, wb) = (Workspace::new(), Workspace::new());
    let a = node(&wa, &redis, &sink, "127.0.0.2");
    let b = node(&wb, &redis, &sink, "127.0.0.3");
    load_both(&a, &b, 20).await;
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 40).await, "got {}", sink.received_count());
    let received = sink.received();
    let arrivals: Vec<Instant> = received.iter().map(|m| m.at).collect();
    let from = |ip: &str| received.iter().filter(|m| m.peer.ip().to_string() == ip).count();
    println!(
        "from .2: {}, from .3: {}, busiest two seconds: {}, most connections at once: {}",
        from("127.0.0.2"),
        from("127.0.0.3"),
        busiest_two_seconds(&arrivals),
        sink.max_concurrent()
    );
    assert_eq!(from("127.0.0.2"), 20);
    assert_eq!(from("127.0.0.3"), 20);
    // One 10/s for both nodes (each alone would allow 10/s: 20/s together).
    assert!(busiest_two_seconds(&arrivals) <= 22, "busiest two seconds {}", busiest_two_seconds(&arrivals));
    let span = arrivals.iter().max().unwrap().duration_since(*arrivals.iter().min().unwrap());
    assert!(span >= Duration::from_millis(3500), "40 at a shared 10/s take ~3.9 s, took {span:?}");
    assert!(sink.max_concurrent() <= 3, "combined connections {}", sink.max_concurrent());
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_each_node_delivers_at_its_share_and_loses_nothing() {
    let mut redis = RedisServer::start();
    let sink = Sink::start().await;
    let (wa, wb) = (Workspace::new(), Workspace::new());
    let a = node(&wa, &redis, &sink, "127.0.0.2");
    let b = node(&wb, &redis, &sink, "127.0.0.3");
    load_both(&a, &b, 25).await;
    assert!(eventually(Duration::from_secs(10), || sink.received_count() >= 10).await);
    redis.stop();
    let stopped = Instant::now();
    assert!(eventually(Duration::from_secs(30), || sink.received_count() == 50).await, "got {}", sink.received_count());
    // Slots reserved in Redis before the stop are still being waited out
    // in the first second; after that each node runs on half of 10/s.
    let settled = stopped + Duration::from_secs(1);
    let after: Vec<Instant> = sink.received().iter().map(|m| m.at).filter(|t| *t > settled).collect();
    println!("{} delivered after redis stopped; busiest two seconds {}", after.len(), busiest_two_seconds(&after));
    assert!(after.len() >= 20, "delivery went on without redis");
    assert!(busiest_two_seconds(&after) <= 22, "busiest two seconds after the stop: {}", busiest_two_seconds(&after));
    for ws in [&wa, &wb] {
        let delivered = || ws.records().iter().filter(|r| r.kind == RecordType::Delivery).count() == 25;
        assert!(eventually(Duration::from_secs(5), delivered).await, "each node logs its 25 deliveries");
        assert!(!ws.records().iter().any(|r| r.kind == RecordType::Bounce), "nothing bounced");
    }
    a.stop();
    b.stop();
}
