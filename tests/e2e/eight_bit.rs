//! 8-bit and UTF-8 mail toward servers that do and do not offer 8BITMIME
//! and SMTPUTF8 (RFC 6152, RFC 6531).

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, smart_host_events};
use petrel_smtp_client::{ConnectOptions, SmtpClient};
use petrel_telemetry::RecordType;
use std::time::Duration;

async fn send(server: std::net::SocketAddr, from: &str, to: &str, body: &str) {
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), server, "injector.test");
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    client.send(from, to, body.as_bytes()).await.expect("accepted");
    client.quit().await;
}

const EIGHT_BIT: &str = "From: <a@src.test>\r\nSubject: greetings\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8bit_body_is_sent_as_quoted_printable_to_a_7bit_server() {
    let sink = Sink::start_seven_bit().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("", &smart_host_events(sink.addr(), ""))).unwrap();
    send(daemon.smtp[0], "a@src.test", "r@dest.test", EIGHT_BIT).await;
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    let data = sink.received()[0].data.clone();
    let text = String::from_utf8(data.clone()).unwrap();
    assert!(data.is_ascii(), "7-bit on the wire:\n{text}");
    assert!(text.contains("Content-Transfer-Encoding: quoted-printable"), "{text}");
    assert!(text.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln"), "{text}");
    assert!(!sink.mail_lines()[0].contains("8BITMIME"), "{:?}", sink.mail_lines());
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_sender_bounces_with_5_6_7_at_a_server_without_smtputf8() {
    let sink = Sink::start_seven_bit().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("", &smart_host_events(sink.addr(), ""))).unwrap();
    send(daemon.smtp[0], "jörg@src.test", "r@dest.test", "Subject: hi\r\n\r\nx\r\n").await;
    let bounced = || ws.records().iter().any(|r| r.kind == RecordType::Bounce);
    assert!(eventually(Duration::from_secs(10), bounced).await);
    daemon.stop();
    let records = ws.records();
    let bounce = records.iter().find(|r| r.kind == RecordType::Bounce).unwrap();
    assert_eq!(bounce.response.enhanced_code.as_deref(), Some("5.6.7"), "{:?}", bounce.response);
    assert_eq!(sink.received_count(), 0);
    assert!(sink.mail_lines().is_empty(), "nothing was attempted: {:?}", sink.mail_lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_sender_goes_with_smtputf8_where_it_is_offered() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("", &smart_host_events(sink.addr(), ""))).unwrap();
    send(daemon.smtp[0], "jörg@src.test", "r@dest.test", EIGHT_BIT).await;
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    let mail = &sink.mail_lines()[0];
    assert!(mail.contains("SMTPUTF8") && mail.contains("BODY=8BITMIME"), "{mail}");
    assert!(String::from_utf8(sink.received()[0].data.clone()).unwrap().contains("Grüße"), "sent as it came");
    daemon.stop();
}
