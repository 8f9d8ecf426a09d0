//! What each class of reply does to a message, as the logs and spool show.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, inject, smart_host_events};
use petrel_telemetry::RecordType;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_retried_and_delivered_once() {
    let sink = Sink::start_with(Arc::new(|_, attempt| {
        if attempt == 1 { (451, "4.7.1 greylisted, try again".into()) } else { (250, "2.0.0 queued".into()) }
    }))
    .await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), "retry_interval = 1,"));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(15), || sink.received_count() == 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.received_count(), 1, "delivered exactly once");
    assert_eq!(sink.attempts("r@b.example"), 2);
    daemon.stop();
    let kinds: Vec<_> = ws.records().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RecordType::Reception, RecordType::TransientFailure, RecordType::Delivery]);
    let records = ws.records();
    assert_eq!(records[1].response.code, 451);
    assert_eq!(records[2].num_attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_bounces_and_leaves_the_spool() {
    let sink = Sink::start_with(Arc::new(|_, _| (550, "5.1.1 no such user".into()))).await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), ""));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "gone@b.example".into())).await, 1);
    let both_bounced = || ws.records().iter().filter(|r| r.kind == RecordType::Bounce).count() == 2;
    assert!(eventually(Duration::from_secs(10), both_bounced).await, "the message and its notification bounce");
    daemon.stop();
    let records = ws.records();
    let bounces: Vec<_> = records.iter().filter(|r| r.kind == RecordType::Bounce && !r.sender.is_empty()).collect();
    assert_eq!(bounces.len(), 1);
    assert_eq!(bounces[0].response.enhanced_code.as_deref(), Some("5.1.1"));
    // The sender's notification went to the same refusing sink: it bounced
    // too, and nothing reports on it (it has the null sender).
    let dsn_bounces = records.iter().filter(|r| r.kind == RecordType::Bounce && r.sender.is_empty()).count();
    assert_eq!(dsn_bounces, 1, "no notification about a notification");
    assert_eq!(sink.received_count(), 0);
    // A restart finds nothing left to deliver.
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 0);
    again.stop();
}
