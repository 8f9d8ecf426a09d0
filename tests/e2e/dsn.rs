//! Delivery status notifications (RFC 3464) as a sender receives them: a
//! bounce and an expiry each send one to the envelope sender from `<>`,
//! parsed here with mail-parser; a delay notice when the queue asks for
//! one; never for the null sender, never about a report, never when the
//! queue turns them off.

use mail_parser::{MessageParser, MimeHeaders};
use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, send_each};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A queue config per destination domain: which notifications it sends.
fn events(sink: std::net::SocketAddr) -> String {
    format!(
        r#"kumo.on('get_queue_config', function(domain)
  local params = {{ protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }}, retry_interval = 1 }}
  if domain == 'nodsn.test' then params.generate_bounces = false end
  if domain == 'expire.test' then params.max_age = 3 end
  if domain == 'delay.test' then
    params.generate_delay_dsn = true
    params.delay_dsn_retry_interval = 2
  end
  return kumo.make_queue_config(params)
end)"#
    )
}

/// The `message/delivery-status` fields of a DSN, per-message and
/// per-recipient groups merged (each name appears once in these tests).
fn status_fields(data: &[u8]) -> (String, HashMap<String, String>, String) {
    let message = MessageParser::default().parse(data).expect("the DSN parses");
    let ct = message.content_type().expect("content type");
    let kind = format!(
        "{}/{}; report-type={}",
        ct.ctype(),
        ct.subtype().unwrap_or(""),
        ct.attribute("report-type").unwrap_or("")
    );
    let mut fields = HashMap::new();
    let mut headers = String::new();
    for part in message.parts.iter() {
        let Some(pct) = part.content_type() else { continue };
        match (pct.ctype(), pct.subtype().unwrap_or("")) {
            ("message", "delivery-status") => {
                for line in String::from_utf8_lossy(part.contents()).lines() {
                    if let Some((name, value)) = line.split_once(':') {
                        fields.insert(name.trim().to_string(), value.trim().to_string());
                    }
                }
            }
            ("text", "rfc822-headers") => headers = String::from_utf8_lossy(part.contents()).to_string(),
            _ => {}
        }
    }
    (kind, fields, headers)
}

fn message(sender: &str, recipient: &str, subject: &str) -> (String, String, String) {
    let from = if sender.is_empty() { "mailer-daemon@other.test" } else { sender };
    let body = format!(
        "From: <{from}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nhello\r\n"
    );
    (sender.to_string(), recipient.to_string(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_expiries_and_delays_notify_the_sender_and_reports_never_do() {
    let sink = Sink::start_with(Arc::new(|m, attempt| {
        let rcpt = m.recipients[0].as_str();
        if rcpt.starts_with("gone") {
            (550, "5.1.1 The email account that you tried to reach does not exist.".into())
        } else if rcpt.starts_with("later") || (rcpt.starts_with("slow") && attempt < 4) {
            (451, "4.3.0 try again later".into())
        } else {
            (250, "2.0.0 OK".into())
        }
    }))
    .await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("", &events(sink.addr()))).unwrap();
    let report_body = "From: <mailer-daemon@other.test>\r\nTo: <r@x.test>\r\nSubject: report\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n";
    let mut messages = vec![
        message("bounce@sender.test", "gone@dest.test", "bounced"),
        message("expiry@sender.test", "later@expire.test", "expired"),
        message("delay@sender.test", "slow@delay.test", "delayed"),
        message("", "gone@dest.test", "nullsender"),
        message("quiet@sender.test", "gone@nodsn.test", "switchedoff"),
    ];
    messages.push(("report@sender.test".into(), "gone@dest.test".into(), report_body.into()));
    let results = send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), messages).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let dsns = || sink.received().into_iter().filter(|m| m.sender.is_empty()).collect::<Vec<_>>();
    let for_sender = |who: &str| dsns().into_iter().filter(|m| m.recipients[0] == who).collect::<Vec<_>>();
    assert!(
        eventually(Duration::from_secs(30), || !for_sender("bounce@sender.test").is_empty()
            && !for_sender("expiry@sender.test").is_empty()
            && !for_sender("delay@sender.test").is_empty())
        .await,
        "notifications arrive: {:?}",
        dsns().iter().map(|m| &m.recipients).collect::<Vec<_>>()
    );

    // The bounce: RFC 3464 fields a mail client or an ESP parser reads.
    let bounce = &for_sender("bounce@sender.test")[0];
    let (kind, fields, headers) = status_fields(&bounce.data);
    assert_eq!(kind, "multipart/report; report-type=delivery-status");
    assert_eq!(fields["Final-Recipient"], "rfc822; gone@dest.test");
    assert_eq!(fields["Action"], "failed");
    assert_eq!(fields["Status"], "5.1.1");
    assert_eq!(fields["Diagnostic-Code"], "smtp; 550 5.1.1 The email account that you tried to reach does not exist.");
    assert!(fields["Remote-MTA"].starts_with("dns; 127.0.0.1"), "{fields:?}");
    assert!(fields["Reporting-MTA"].starts_with("dns; "), "{fields:?}");
    assert!(headers.contains("Subject: bounced") && headers.contains("Message-ID: <bounced@sender.test>"), "{headers}");
    let text = String::from_utf8_lossy(&bounce.data);
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");

    // The expiry: given up after max_age, reported as 5.4.7.
    let (_, fields, headers) = status_fields(&for_sender("expiry@sender.test")[0].data);
    assert_eq!((fields["Action"].as_str(), fields["Status"].as_str()), ("failed", "5.4.7"));
    assert_eq!(fields["Final-Recipient"], "rfc822; later@expire.test");
    assert!(headers.contains("Subject: expired"), "{headers}");

    // The delay: still trying, with the time it gives up.
    let (_, fields, _) = status_fields(&for_sender("delay@sender.test")[0].data);
    assert_eq!((fields["Action"].as_str(), fields["Status"].as_str()), ("delayed", "4.3.0"));
    assert!(fields.contains_key("Will-Retry-Until"), "{fields:?}");
    // ...and then it is delivered after all (attempt 4).
    assert!(
        eventually(Duration::from_secs(30), || sink.received().iter().any(|m| m.recipients[0] == "slow@delay.test"))
            .await
    );

    // Nothing for the null sender, a report, or a queue that turned them off;
    // and every bounce recorded is accounted for.
    let settled = || {
        let records = ws.records();
        records.iter().filter(|r| r.kind == petrel_telemetry::RecordType::Bounce).count() >= 4
    };
    assert!(eventually(Duration::from_secs(10), settled).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for quiet in ["quiet@sender.test", "report@sender.test"] {
        assert!(for_sender(quiet).is_empty(), "no notification to {quiet}");
    }
    // Exactly the bounce and the expiry were reported as failures: the
    // null sender's bounce, the report's and the switched-off queue's not.
    let failed: Vec<String> = dsns()
        .iter()
        .filter(|m| status_fields(&m.data).1.get("Action").map(String::as_str) == Some("failed"))
        .map(|m| m.recipients[0].clone())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let spooled_dsns = ws
        .records()
        .iter()
        .filter(|r| r.kind == petrel_telemetry::RecordType::Reception && r.reception_protocol.as_deref() == Some("DSN"))
        .count();
    assert_eq!(spooled_dsns, dsns().len(), "each notification is spooled (and logged) before it is sent");
    daemon.stop();
}
