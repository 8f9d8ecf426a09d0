//! Nothing acknowledged is lost: a crash between the 250 and delivery.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, inject, smart_host_events};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mail_survives_a_crash_and_is_delivered_once() {
    // Reserve a port for the sink, then take the sink down.
    let sink_addr = Sink::start().await.stop();
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink_addr, "retry_interval = 1,"));
    let daemon = TestDaemon::start(&policy).unwrap();
    let accepted = inject(daemon.smtp[0], 40, 4, |i| ("s@a.example".into(), format!("r{i}@b.example"))).await;
    assert_eq!(accepted, 40);
    daemon.crash();

    let sink = Sink::start_at(sink_addr, Arc::new(|_, _| (250, "2.0.0 ok".into()))).await;
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(daemon.recovered, 40, "every acknowledged message was in the spool");
    assert!(eventually(Duration::from_secs(30), || sink.received_count() >= 40).await, "got {}", sink.received_count());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_rcpt: HashMap<String, usize> = HashMap::new();
    for m in sink.received() {
        *per_rcpt.entry(m.recipients[0].clone()).or_default() += 1;
    }
    assert_eq!(per_rcpt.len(), 40);
    assert!(per_rcpt.values().all(|&n| n == 1), "duplicates: {per_rcpt:?}");
    daemon.stop();
}
