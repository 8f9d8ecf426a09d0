//! The client against a real sink on loopback.

use petrel_smtp_client::{ClientError, ConnectOptions, Phase, SmtpClient};
use petrel_testkit::Sink;
use std::sync::Arc;

fn options(source: &str, sink: &Sink) -> ConnectOptions {
    ConnectOptions::new(Some(source.parse().unwrap()), sink.addr(), "mta2.test")
}

#[tokio::test]
async fn binds_the_source_and_reuses_the_connection() {
    let sink = Sink::start().await;
    let mut client = SmtpClient::connect(&options("127.0.0.2", &sink)).await.unwrap();
    assert!(client.capabilities().pipelining);
    for n in 0..3 {
        let reply = client.send("a@x.test", &format!("r{n}@y.test"), b"Subject: t\r\n\r\n.dot\r\n").await.unwrap();
        assert_eq!(reply.code, 250);
    }
    client.quit().await;
    let got = sink.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.peer.ip().to_string() == "127.0.0.2" && m.ehlo == "mta2.test"));
    assert_eq!(got[0].data, b"Subject: t\r\n\r\n.dot\r\n");
    assert_eq!(sink.total_connections(), 1);
}

#[tokio::test]
async fn replies_are_classified() {
    let sink = Sink::start_with(Arc::new(|m, _| {
        if m.recipients[0].starts_with("temp") {
            (451, "4.3.0 later".into())
        } else {
            (550, "5.1.1 no such user".into())
        }
    }))
    .await;
    let mut client = SmtpClient::connect(&options("127.0.0.3", &sink)).await.unwrap();
    let temp = client.send("a@x.test", "temp@y.test", b"x\r\n").await.unwrap_err();
    assert!(!temp.is_permanent() && temp.connection_usable());
    let perm = client.send("a@x.test", "perm@y.test", b"x\r\n").await.unwrap_err();
    assert!(perm.is_permanent());
    assert!(matches!(perm, ClientError::Rejected { phase: Phase::DataDot, .. }));
    assert_eq!(perm.reply().unwrap().enhanced.unwrap().to_string(), "5.1.1");
}

#[tokio::test]
async fn unusable_source_address_is_a_transient_bind_error() {
    let sink = Sink::start().await;
    // TEST-NET-1 is never configured on a test machine.
    let err = match SmtpClient::connect(&options("192.0.2.1", &sink)).await {
        Err(e) => e,
        Ok(_) => panic!("bind to a foreign address succeeded"),
    };
    assert!(matches!(err, ClientError::Bind { .. }), "{err}");
    assert!(!err.is_permanent());
    assert!(err.to_string().contains("192.0.2.1"));
}

#[tokio::test]
async fn several_recipients_share_one_transaction() {
    let sink = Sink::start().await;
    let mut client = SmtpClient::connect(&options("127.0.0.2", &sink)).await.unwrap();
    let results = client
        .send_batch("a@x.test", &["r1@y.test", "r2@y.test", "r3@y.test"], b"Subject: t\r\n\r\nx\r\n", false)
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(sink.transactions(), 1);
    assert_eq!(sink.received_count(), 3);
}

#[tokio::test]
async fn lmtp_answers_each_recipient() {
    let sink = Sink::start().await;
    let mut opts = options("127.0.0.2", &sink);
    opts.lmtp = true;
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    let results = client.send_batch("a@x.test", &["r1@y.test", "r2@y.test"], b"x\r\n", false).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.is_ok()));
    // The connection is still in step: another transaction works.
    client.send("a@x.test", "r3@y.test", b"x\r\n").await.unwrap();
    assert_eq!(sink.received_count(), 3);
}

#[tokio::test]
async fn line_breaks_in_envelope_addresses_are_never_sent() {
    let sink = Sink::start().await;
    let mut client = SmtpClient::connect(&options("127.0.0.2", &sink)).await.unwrap();
    for (sender, recipient) in [
        ("a@x.test\r\nRCPT TO:<victim@y.test>", "r@y.test"),
        ("a@x.test", "r@y.test>\r\nDATA"),
        ("a@x\0.test", "r@y.test"),
    ] {
        let err = client.send(sender, recipient, b"x\r\n").await.unwrap_err();
        assert!(matches!(err, ClientError::Unsendable { enhanced: "5.1.7", .. }), "{err}");
        assert!(err.is_permanent() && err.connection_usable());
    }
    assert!(sink.mail_lines().is_empty(), "nothing reached the server: {:?}", sink.mail_lines());
    client.send("a@x.test", "r@y.test", b"x\r\n").await.unwrap();
    assert_eq!(sink.received_count(), 1, "the connection is still good");
}

#[tokio::test]
async fn a_421_before_the_server_hangs_up_is_the_outcome_not_the_lost_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"220 busy.test\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"250-busy.test\r\n250 PIPELINING\r\n").await.unwrap();
        // MAIL, RCPT and DATA arrive pipelined: accept MAIL, refuse RCPT, hang up.
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"250 2.1.0 ok\r\n421 4.7.0 too many connections\r\n").await.unwrap();
    });
    let opts = ConnectOptions::new(Some("127.0.0.2".parse().unwrap()), addr, "mta2.test");
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    let err = client.send("a@x.test", "r@y.test", b"x\r\n").await.unwrap_err();
    match &err {
        ClientError::Rejected { phase: Phase::RcptTo, reply } => {
            assert_eq!((reply.code, reply.enhanced.unwrap().to_string()), (421, "4.7.0".to_string()));
            assert!(reply.text.contains("too many connections"));
        }
        other => panic!("the server's own reply was lost: {other}"),
    }
    assert!(!err.is_permanent() && !err.connection_usable());
}
