//! Reports coming back: an out-of-band bounce (a DSN in Gmail's shape)
//! and an ARF complaint (RFC 5965's example) sent to domains with
//! `log_oob` / `log_arf` become `OOB` and `Feedback` records tied, through
//! the `X-Petrel-Id` header, to the message Petrel sent, and classified.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, send_each, smart_host_events};
use petrel_telemetry::RecordType;
use std::time::Duration;

fn sample(name: &str, original_id: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/samples").join(name);
    let text = std::fs::read_to_string(path).unwrap().replace("@@ORIGINAL_ID@@", original_id);
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

const DOMAINS: &str = r#"
kumo.on('get_listener_domain', function(domain)
  if domain == 'bounce.example.com' then
    return kumo.make_listener_domain { log_oob = 'LogThenDrop' }
  elseif domain == 'fbl.example.com' then
    return kumo.make_listener_domain { log_arf = 'LogThenDrop' }
  elseif domain == 'inbound.example.com' then
    return kumo.make_listener_domain { relay_to = true, log_oob = true }
  end
end)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oob_bounces_and_complaints_become_classified_records_of_the_original() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let classifier = "kumo.configure_bounce_classifier { files = { '[petrel]/bounce_classifier/default.toml' } }";
    let events = format!("{DOMAINS}\n{}", smart_host_events(sink.addr(), "generate_bounces = false,"));
    let daemon = TestDaemon::start(&ws.policy(classifier, &events)).unwrap();
    let local = "127.0.0.1".parse().unwrap();
    let outside = "127.0.0.5".parse().unwrap();

    // The message that will bounce later, sent by an injector.
    let original = (
        "news@example.com".to_string(),
        "nosuchuser@gmail.com".to_string(),
        "From: <news@example.com>\r\nTo: <nosuchuser@gmail.com>\r\nSubject: the original\r\n\r\nhi\r\n".to_string(),
    );
    assert!(send_each(daemon.smtp[0], local, vec![original]).await[0].is_ok());
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    let sent = String::from_utf8(sink.received()[0].data.clone()).unwrap();
    let id = sent.lines().find_map(|l| l.strip_prefix("X-Petrel-Id: ")).expect("the reference header").to_string();
    let logged = || ws.records().iter().any(|r| r.kind == RecordType::Reception && r.id == id);
    assert!(eventually(Duration::from_secs(10), logged).await, "the header names the message's spool id");

    // The provider's bounce and a complaint arrive from outside.
    let reports = vec![
        ("".to_string(), "bounces@bounce.example.com".to_string(), sample("gmail-dsn.eml", &id)),
        ("abusedesk@example.com".to_string(), "fbl@fbl.example.com".to_string(), sample("arf.eml", &id)),
    ];
    let results = send_each(daemon.smtp[0], outside, reports).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Mail that is no report is refused by a domain that takes only reports.
    let plain =
        ("x@y.test".to_string(), "bounces@bounce.example.com".to_string(), "Subject: hi\r\n\r\nhi\r\n".to_string());
    let refused = send_each(daemon.smtp[0], outside, vec![plain]).await;
    assert!(refused[0].as_ref().is_err_and(|e| e.contains("550") && e.contains("only reports")), "{refused:?}");
    // A bounce to a relayed domain with log_oob = true is logged and relayed.
    let relayed = ("".to_string(), "postmaster@inbound.example.com".to_string(), sample("gmail-dsn.eml", &id));
    assert!(send_each(daemon.smtp[0], outside, vec![relayed]).await[0].is_ok());
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 2).await, "the relayed report arrives");

    // Records reach the log a moment after the replies.
    let written = || {
        let records = ws.records();
        let count = |kind| records.iter().filter(|r| r.kind == kind).count();
        count(RecordType::Oob) == 2 && count(RecordType::Feedback) == 1 && count(RecordType::Reception) == 2
    };
    assert!(
        eventually(Duration::from_secs(10), written).await,
        "{:?}",
        ws.records().iter().map(|r| r.kind).collect::<Vec<_>>()
    );
    let records = ws.records();
    let oob: Vec<_> = records.iter().filter(|r| r.kind == RecordType::Oob).collect();
    assert_eq!(oob.len(), 2, "one per report to a log_oob domain");
    for r in &oob {
        assert_eq!(r.id, id, "tied to the original");
        assert_eq!(r.recipient, "nosuchuser@gmail.com");
        assert_eq!((r.response.code, r.response.enhanced_code.as_deref()), (550, Some("5.1.1")));
        assert!(r.response.content.contains("does not exist"), "{:?}", r.response);
        assert_eq!(r.bounce_classification, "InvalidRecipient");
        assert!(r.site.starts_with("gmail-smtp-in.l.google.com"), "{}", r.site);
    }
    let feedback: Vec<_> = records.iter().filter(|r| r.kind == RecordType::Feedback).collect();
    assert_eq!(feedback.len(), 1);
    let f = feedback[0];
    assert_eq!(f.id, id);
    assert_eq!(f.bounce_classification, "Complaint");
    let report = f.feedback_report.as_ref().unwrap();
    assert_eq!(report["feedback_type"], "abuse");
    assert_eq!(report["source_ip"], "192.0.2.1");
    assert_eq!(report["reporting_mta"]["name"], "mail.example.com");
    assert_eq!(report["original_rcpto_to"][0], "<user@example.com>");
    assert_eq!(report["reported_uri"].as_array().unwrap().len(), 2);
    assert_eq!(report["extensions"]["removal-recipient"][0], "user@example.com");
    assert!(report["original_message"].as_str().unwrap().contains("Subject: Earn money"));
    // The dropped reports were never spooled or queued.
    let receptions = records.iter().filter(|r| r.kind == RecordType::Reception).count();
    assert_eq!(receptions, 2, "the original and the relayed report only");
    daemon.stop();
}
