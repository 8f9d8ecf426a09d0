//! Not an open relay: a client outside relay_hosts cannot send anywhere.

use petrel_e2e::{Sink, TestDaemon, Workspace, smart_host_events};
use petrel_smtp_client::{ClientError, ConnectOptions, Phase, SmtpClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_relay_client_is_refused_and_nothing_is_spooled() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), ""));
    let daemon = TestDaemon::start(&policy).unwrap();
    let opts = ConnectOptions::new(Some("127.0.0.9".parse().unwrap()), daemon.smtp[0], "outsider.test");
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    let err =
        client.send("spammer@bad.example", "victim@elsewhere.example", b"Subject: x\r\n\r\nx\r\n").await.unwrap_err();
    match err {
        ClientError::Rejected { phase: Phase::RcptTo, reply } => {
            assert_eq!(reply.code, 550);
            assert_eq!(reply.enhanced.unwrap().to_string(), "5.7.1");
        }
        other => panic!("expected a refusal at RCPT, got {other}"),
    }
    daemon.stop();
    assert!(ws.records().is_empty(), "nothing was received");
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 0, "nothing was spooled");
    again.stop();
}
