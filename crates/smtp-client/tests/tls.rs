//! STARTTLS modes against real sinks, one offering TLS with a self-signed
//! certificate and one not offering it.

use petrel_smtp_client::{ClientError, ConnectOptions, SmtpClient, TlsConfigs, TlsMode};
use petrel_testkit::Sink;
use std::sync::Arc;

fn options(sink: &Sink, mode: TlsMode) -> ConnectOptions {
    let mut opts = ConnectOptions::new(Some("127.0.0.2".parse().unwrap()), sink.addr(), "mta.test");
    opts.server_name = "localhost".into();
    opts.tls = mode;
    opts.tls_configs = Some(TlsConfigs::new());
    opts
}

fn accept_all() -> petrel_testkit::ReplyScript {
    Arc::new(|_, _| (250, "ok".into()))
}

#[tokio::test]
async fn opportunistic_encrypts_when_offered() {
    let sink = Sink::start_tls(accept_all()).await;
    let mut client = SmtpClient::connect(&options(&sink, TlsMode::Opportunistic)).await.unwrap();
    let (version, cipher) = client.tls_info().cloned().expect("TLS negotiated");
    assert!(version.starts_with("TLSv1_"), "{version}");
    assert!(!cipher.is_empty());
    client.send("a@x.test", "b@y.test", b"Subject: t\r\n\r\nsecret\r\n").await.unwrap();
    assert!(sink.received()[0].tls.is_some(), "the sink saw the message over TLS");
}

#[tokio::test]
async fn opportunistic_stays_clear_when_not_offered() {
    let sink = Sink::start().await;
    let mut client = SmtpClient::connect(&options(&sink, TlsMode::Opportunistic)).await.unwrap();
    assert!(client.tls_info().is_none());
    client.send("a@x.test", "b@y.test", b"x\r\n").await.unwrap();
}

#[tokio::test]
async fn required_never_falls_back_to_clear() {
    let plain = Sink::start().await;
    let err = SmtpClient::connect(&options(&plain, TlsMode::Required)).await.err().expect("refused");
    assert!(matches!(err, ClientError::Tls { .. }) && !err.is_permanent(), "{err}");
    let err = SmtpClient::connect(&options(&plain, TlsMode::RequiredInsecure)).await.err().expect("refused");
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
}

#[tokio::test]
async fn required_verifies_the_certificate_and_insecure_does_not() {
    let sink = Sink::start_tls(accept_all()).await;
    let err = SmtpClient::connect(&options(&sink, TlsMode::Required)).await.err().expect("self-signed refused");
    assert!(err.to_string().contains("handshake"), "{err}");
    let client = SmtpClient::connect(&options(&sink, TlsMode::RequiredInsecure)).await.unwrap();
    assert!(client.tls_info().is_some());
}

#[tokio::test]
async fn ipv6_source_and_lmtp_greeting() {
    let listener = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sink = Sink::start_at(addr, accept_all()).await;
    let mut opts = ConnectOptions::new(Some("::1".parse().unwrap()), addr, "lmtp.test");
    opts.lmtp = true;
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    client.send("a@x.test", "b@y.test", b"x\r\n").await.unwrap();
    let got = sink.received();
    assert_eq!(got[0].peer.ip().to_string(), "::1");
    assert_eq!(got[0].ehlo, "lmtp.test");
}
