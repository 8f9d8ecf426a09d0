//! Bounce classification end to end: replies from a real sink, classified
//! by the shipped rules, appear in the log records, in the metrics by
//! class × source × site, and in the queue summary, so an operator sees
//! that one IP is blocked at one provider.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, smart_host_events};
use petrel_telemetry::RecordType;
use std::sync::Arc;
use std::time::Duration;

const SOURCES: &str = r#"
  kumo.configure_bounce_classifier { files = { '[petrel]/bounce_classifier/default.toml' } }
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2' }
  kumo.define_egress_source { name = 'ip-3', source_address = '127.0.0.3' }
  kumo.define_egress_pool { name = 'both', entries = { { name = 'ip-2' }, { name = 'ip-3' } } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_in_records_metrics_and_the_queue_summary() {
    // 127.0.0.2 is on a blocklist at this provider; 127.0.0.3 is fine, but
    // one mailbox is gone and one is deferred for the sender's reputation.
    let sink = Sink::start_with(Arc::new(|m, attempt| {
        let rcpt = m.recipients[0].as_str();
        if m.peer.ip().to_string() == "127.0.0.2" {
            (550, "5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org".into())
        } else if rcpt.starts_with("gone") {
            (550, "5.1.1 The email account that you tried to reach does not exist.".into())
        } else if rcpt.starts_with("later") && attempt == 1 {
            (
                421,
                "4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address."
                    .into(),
            )
        } else {
            (250, "2.0.0 OK".into())
        }
    }))
    .await;
    let ws = Workspace::new();
    // Notifications to the sender are tested in dsn.rs; here only the
    // original messages' outcomes are counted.
    let events = smart_host_events(sink.addr(), "egress_pool = 'both', retry_interval = 1, generate_bounces = false,");
    let daemon = TestDaemon::start(&ws.policy(SOURCES, &events)).unwrap();
    let mut recipients: Vec<String> = (0..8).map(|i| format!("r{i}@dest.test")).collect();
    recipients.extend(["gone1@dest.test", "gone2@dest.test", "later1@dest.test", "later2@dest.test"].map(String::from));
    let list = recipients.clone();
    let accepted =
        petrel_e2e::inject(daemon.smtp[0], list.len(), 1, move |i| ("s@sender.test".into(), list[i].clone())).await;
    assert_eq!(accepted, recipients.len());
    // Every message ends: delivered from ip-3 or bounced.
    let settled = || {
        ws.records()
            .iter()
            .filter(|r| matches!(r.kind, RecordType::Delivery | RecordType::Bounce) && r.sender == "s@sender.test")
            .count()
    };
    assert!(eventually(Duration::from_secs(30), || settled() == recipients.len()).await, "settled: {}", settled());

    let records = ws.records();
    let failures: Vec<_> =
        records.iter().filter(|r| matches!(r.kind, RecordType::Bounce | RecordType::TransientFailure)).collect();
    assert!(!failures.is_empty());
    for r in &failures {
        let expected = match (r.egress_source.as_deref(), r.recipient.as_str()) {
            (Some("ip-2"), _) => "SpamBlock",
            (_, rcpt) if rcpt.starts_with("gone") => "InvalidRecipient",
            (_, rcpt) if rcpt.starts_with("later") => "PolicyRelated",
            other => panic!("unexpected failure {other:?}: {:?}", r.response),
        };
        assert_eq!(r.bounce_classification, expected, "{:?}", r.response);
    }
    let delivered = records.iter().filter(|r| r.kind == RecordType::Delivery).count();
    let bounced = |class: &str| {
        failures.iter().filter(|r| r.kind == RecordType::Bounce && r.bounce_classification == class).count()
    };
    let (blocked, gone) = (bounced("SpamBlock"), bounced("InvalidRecipient"));
    assert!(blocked > 0, "the weights send some mail through ip-2");
    assert_eq!(delivered + blocked + gone, recipients.len(), "each message delivered, blocked or gone");
    for r in records.iter().filter(|r| r.kind == RecordType::Delivery) {
        assert_eq!(r.bounce_classification, "Uncategorized", "a delivery has no bounce class");
    }

    // The metric counts the same failures by class, source and site.
    let base = format!("http://{}", daemon.http[0]);
    let metrics = http("GET", format!("{base}/metrics"), vec![], None).await.body;
    let site = sink.addr().to_string();
    let spam_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("petrel_bounce_classifications_total{")
                && l.contains("classification=\"SpamBlock\"")
                && l.contains("egress_source=\"ip-2\"")
                && l.contains("event=\"Bounce\"")
        })
        .unwrap_or_else(|| panic!("no SpamBlock line in\n{metrics}"));
    assert!(spam_line.contains(&site), "{spam_line}");
    assert!(spam_line.ends_with(&format!(" {blocked}")), "{spam_line} counts {blocked}");

    // The queue summary's last hour, worst first: ip-2 blocked at the site.
    let summary = http("GET", format!("{base}/api/admin/queue-summary/v1"), vec![], None).await.json();
    let rows = summary["bounces_last_hour"].as_array().expect("bounces_last_hour");
    let top = &rows[0];
    assert_eq!((top["source"].as_str(), top["classification"].as_str()), (Some("ip-2"), Some("SpamBlock")), "{rows:?}");
    assert_eq!(top["bounced"], blocked as u64);
    assert!(top["site"].as_str().unwrap().contains(&site));
    if gone > 0 {
        let row = rows.iter().find(|r| r["classification"] == "InvalidRecipient").expect("InvalidRecipient row");
        assert_eq!((row["source"].as_str(), row["bounced"].as_u64()), (Some("ip-3"), Some(gone as u64)));
    }
    daemon.stop();
}
