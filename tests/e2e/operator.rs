//! Operator controls on a running daemon: suspend and resume sources and
//! queues, rebind a tenant to another pool, bounce a tenant's mail.

use petrel::{QueueFilter, RebindTarget};
use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, inject, smart_host_events};
use petrel_telemetry::RecordType;
use std::sync::Arc;
use std::time::Duration;

const TWO_SOURCES: &str = r#"  kumo.define_egress_source { name = 'a', source_address = '127.0.0.2' }
  kumo.define_egress_source { name = 'b', source_address = '127.0.0.3' }
  kumo.define_egress_pool { name = 'both', entries = { { name = 'a' }, { name = 'b' } } }
  kumo.define_egress_pool { name = 'only-a', entries = { { name = 'a' } } }
  kumo.define_egress_pool { name = 'only-b', entries = { { name = 'b' } } }"#;

fn count_from(sink: &Sink, ip: &str) -> usize {
    sink.received().iter().filter(|m| m.peer.ip().to_string() == ip).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_source_is_skipped_until_resumed() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy(TWO_SOURCES, &smart_host_events(sink.addr(), "egress_pool = 'both',"));
    let daemon = TestDaemon::start(&policy).unwrap();
    daemon.controls.suspend_source("b");
    assert_eq!(inject(daemon.smtp[0], 20, 2, |i| ("s@a.example".into(), format!("r{i}@d.example"))).await, 20);
    assert!(eventually(Duration::from_secs(15), || sink.received_count() == 20).await);
    assert_eq!(count_from(&sink, "127.0.0.2"), 20, "all traffic took the other source");

    daemon.controls.resume_source("b");
    assert_eq!(inject(daemon.smtp[0], 20, 2, |i| ("s@a.example".into(), format!("x{i}@d.example"))).await, 20);
    assert!(eventually(Duration::from_secs(15), || sink.received_count() == 40).await);
    assert_eq!((count_from(&sink, "127.0.0.2"), count_from(&sink, "127.0.0.3")), (30, 10), "1:1 again after resume");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_queue_holds_its_mail_until_resumed() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), ""));
    let daemon = TestDaemon::start(&policy).unwrap();
    daemon.controls.suspend_queue("held.example");
    assert_eq!(inject(daemon.smtp[0], 5, 1, |i| ("s@a.example".into(), format!("r{i}@held.example"))).await, 5);
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@free.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await, "other queues flow");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received_count(), 1, "the suspended queue held its mail");
    daemon.controls.resume_queue("held.example");
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 6).await);
    daemon.stop();
}

/// Tenant `acme` sends from pool `only-a`, whose address the sink defers.
fn deferring_setup(sink: &Sink) -> String {
    format!(
        r#"kumo.on('smtp_server_message_received', function(msg, conn_meta)
  msg:set_meta('tenant', 'acme')
end)
{}"#,
        smart_host_events(sink.addr(), "egress_pool = 'only-a', retry_interval = 3600,")
    )
}

fn defers_a() -> petrel_testkit::ReplyScript {
    Arc::new(|m, _| {
        if m.peer.ip().to_string() == "127.0.0.2" { (451, "4.7.0 IP reputation".into()) } else { (250, "ok".into()) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebind_moves_a_tenants_queued_mail_to_another_pool() {
    let sink = Sink::start_with(defers_a()).await;
    let ws = Workspace::new();
    let policy = ws.policy(TWO_SOURCES, &deferring_setup(&sink));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 10, 2, |i| ("s@a.example".into(), format!("r{i}@d.example"))).await, 10);
    let controls = daemon.controls.clone();
    // Waiting alone could count a fresh message not yet released: each must
    // have had its attempt too.
    let all_deferred = || (0..10).all(|i| sink.attempts(&format!("r{i}@d.example")) >= 1) && controls.waiting() == 10;
    assert!(eventually(Duration::from_secs(10), all_deferred).await, "all ten deferred once");

    let filter = QueueFilter { tenant: Some("acme".into()), ..Default::default() };
    let moved = daemon.controls.rebind(&filter, &RebindTarget::Pool("only-b".into())).await;
    assert_eq!(moved, 10);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 10).await);
    assert_eq!(count_from(&sink, "127.0.0.3"), 10, "delivered from the new pool's source");
    drop(controls);
    daemon.stop();
    let pools: Vec<_> =
        ws.records().into_iter().filter(|r| r.kind == RecordType::Delivery).map(|r| r.egress_pool.unwrap()).collect();
    assert!(pools.iter().all(|p| p == "only-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bounce_removes_a_tenants_queued_mail() {
    let sink = Sink::start_with(defers_a()).await;
    let ws = Workspace::new();
    let policy = ws.policy(TWO_SOURCES, &deferring_setup(&sink));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 4, 1, |i| ("s@a.example".into(), format!("r{i}@d.example"))).await, 4);
    let controls = daemon.controls.clone();
    let all_deferred = || (0..4).all(|i| sink.attempts(&format!("r{i}@d.example")) >= 1) && controls.waiting() == 4;
    assert!(eventually(Duration::from_secs(10), all_deferred).await, "all four deferred once");
    let other = QueueFilter { tenant: Some("someone-else".into()), ..Default::default() };
    assert_eq!(daemon.controls.admin_bounce(&other, "spam complaint").await, 0);
    let acme = QueueFilter { tenant: Some("acme".into()), ..Default::default() };
    assert_eq!(daemon.controls.admin_bounce(&acme, "spam complaint").await, 4);
    drop(controls);
    daemon.stop();
    let bounced = ws.records().into_iter().filter(|r| r.kind == RecordType::AdminBounce).count();
    assert_eq!(bounced, 4);
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 0, "bounced mail left the spool");
    again.stop();
}
