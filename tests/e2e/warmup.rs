//! IP warm-up plans: a new source sends at most the day's cap of its plan.
//! With a waiting pool the mail over the cap waits for tomorrow; with a
//! spilling pool it leaves from the pool's other source. The queue summary
//! shows the source's day, cap and use.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, send_each, smart_host_events};
use std::time::Duration;

/// Yesterday, so today is day 2 of the plan (cap 3).
fn yesterday() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string()
}

fn init(overflow: &str) -> String {
    format!(
        r#"
  kumo.start_http_listener {{ listen = '127.0.0.1:0', trusted_hosts = {{ '127.0.0.1' }} }}
  kumo.define_egress_source {{ name = 'new-ip', source_address = '127.0.0.2',
    warmup = {{ start = '{}', daily = {{ 1, 3, 10 }} }} }}
  kumo.define_egress_source {{ name = 'old-ip', source_address = '127.0.0.3' }}
  kumo.define_egress_pool {{ name = 'new', entries = {{ {{ name = 'new-ip' }} }} }}
  kumo.define_egress_pool {{ name = 'mixed', overflow = '{overflow}', entries = {{ {{ name = 'new-ip' }}, {{ name = 'old-ip' }} }} }}
"#,
        yesterday()
    )
}

fn mail(n: usize) -> Vec<(String, String, String)> {
    (0..n)
        .map(|i| {
            let rcpt = format!("r{i}@dest.test");
            (
                "s@sender.test".into(),
                rcpt.clone(),
                format!("From: <s@sender.test>\r\nTo: <{rcpt}>\r\nSubject: {i}\r\n\r\nhi\r\n"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_over_the_days_cap_waits_and_the_summary_shows_the_plan() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon =
        TestDaemon::start(&ws.policy(&init("wait"), &smart_host_events(sink.addr(), "egress_pool = 'new',"))).unwrap();
    assert!(send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), mail(6)).await.iter().all(Result::is_ok));
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 3).await, "day 2's cap is 3");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.received_count(), 3, "the rest waits for tomorrow");
    let summary =
        http("GET", format!("http://{}/api/admin/queue-summary/v1", daemon.http[0]), vec![], None).await.json();
    let w = &summary["warmup"][0];
    assert_eq!(
        (w["source"].as_str(), w["day"].as_u64(), w["cap"].as_u64(), w["used"].as_u64()),
        (Some("new-ip"), Some(2), Some(3), Some(3)),
        "{summary}"
    );
    let queue = &summary["scheduled"][0];
    assert_eq!(queue["messages"], 3, "{queue}");
    assert!(queue["held"].as_str().unwrap().contains("warm-up: new-ip has sent today's cap"), "{queue}");
    daemon.stop();

    // A restart keeps the day's count: nothing more goes out today.
    let daemon =
        TestDaemon::start(&ws.policy(&init("wait"), &smart_host_events(sink.addr(), "egress_pool = 'new',"))).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.received_count(), 3, "the cap holds across the restart");
    let summary =
        http("GET", format!("http://{}/api/admin/queue-summary/v1", daemon.http[0]), vec![], None).await.json();
    assert_eq!(summary["warmup"][0]["used"], 3, "{summary}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilling_pool_sends_the_rest_from_its_other_sources() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon =
        TestDaemon::start(&ws.policy(&init("spill"), &smart_host_events(sink.addr(), "egress_pool = 'mixed',")))
            .unwrap();
    assert!(send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), mail(10)).await.iter().all(Result::is_ok));
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 10).await, "all delivered");
    let from_new = sink.received().iter().filter(|m| m.peer.ip().to_string() == "127.0.0.2").count();
    assert_eq!(from_new, 3, "the new IP sent exactly its cap");
    daemon.stop();
}
