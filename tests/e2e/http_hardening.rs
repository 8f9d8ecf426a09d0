//! The HTTP listener against hostile clients and browsers: no cross-site
//! requests, no slow-client exhaustion, no header injection, and renewed
//! certificates picked up by a reload.

use petrel_e2e::{Sink, TestDaemon, Workspace, http, smart_host_events};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn url(daemon: &TestDaemon, path: &str) -> String {
    format!("http://{}{path}", daemon.http[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_browser_could_forge_are_refused_with_415_and_change_nothing() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let http_listener = "  kumo.start_http_listener { listen = '127.0.0.1:0' }";
    let daemon = TestDaemon::start(&ws.policy(http_listener, &smart_host_events(sink.addr(), ""))).unwrap();
    let inject = json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }], "content": "Subject: x\n\nbody\n" });
    let body = inject.to_string().into_bytes();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""] {
        let headers = vec![("Content-Type", content_type.to_string())];
        let reply = http("POST", url(&daemon, "/api/inject/v1"), headers.clone(), Some(body.clone())).await;
        assert_eq!(reply.status, 415, "{content_type:?}: {}", reply.body);
        let suspend = json!({ "domain": "d.example", "reason": "csrf" }).to_string().into_bytes();
        let reply = http("POST", url(&daemon, "/api/admin/suspend/v1"), headers, Some(suspend)).await;
        assert_eq!(reply.status, 415, "{content_type:?}");
    }
    let summary = http("GET", url(&daemon, "/api/admin/queue-summary/v1"), vec![], None).await;
    assert!(!summary.body.contains("csrf"), "no suspension was made: {}", summary.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received_count(), 0, "nothing was injected");
    let json_type = vec![("Content-Type", "application/json; charset=utf-8".to_string())];
    assert_eq!(http("POST", url(&daemon, "/api/inject/v1"), json_type, Some(body)).await.status, 200);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_through_inject_is_a_400_naming_the_field() {
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("  kumo.start_http_listener { listen = '127.0.0.1:0' }", "")).unwrap();
    let request = json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }],
        "content": { "subject": "Hi\r\nBcc: victim@x.test", "text_body": "x" } });
    let reply = http("POST", url(&daemon, "/api/inject/v1"), vec![], Some(request.to_string().into_bytes())).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["field"], "content.subject", "{}", reply.body);
    daemon.stop();
}

/// Read until the server closes; returns what it sent and how long it took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let ws = Workspace::new();
    let listener = "  kumo.start_http_listener { listen = '127.0.0.1:0', header_read_timeout = '1s', request_timeout = '2s', max_connections = 4 }";
    let daemon = TestDaemon::start(&ws.policy(listener, "")).unwrap();
    let addr = daemon.http[0];

    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /api/check-liveness/v1 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = until_closed(&mut partial, Duration::from_secs(6)).await;
    assert!(took < Duration::from_secs(4), "a partial header block is dropped after the header deadline: {took:?}");

    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST /api/inject/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow_body.write_all(b" ").await.is_err() {
                break;
            }
        }
        slow_body
    });
    let mut slow_body = drip.await.unwrap();
    let (answer, _) = until_closed(&mut slow_body, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "a body at 2 B/s gets 408: {answer:?}");

    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/check-liveness/v1 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /api/check-liveness/v1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (answer, took) = until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(answer.is_empty() && took < Duration::from_secs(1), "a fifth connection is closed: {answer:?} {took:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http("GET", url(&daemon, "/api/check-liveness/v1"), vec![], None).await.status, 200);
    daemon.stop();
}

fn write_cert(dir: &std::path::Path) -> CertificateDer<'static> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.der().clone()
}

/// The certificate a TLS handshake with `addr` presents (after STARTTLS
/// when `smtp`).
async fn presented(addr: std::net::SocketAddr, smtp: bool) -> CertificateDer<'static> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    if smtp {
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await.unwrap();
        tcp.write_all(b"EHLO c.test\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tcp.read(&mut buf).await.unwrap();
        tcp.write_all(b"STARTTLS\r\n").await.unwrap();
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"220"));
    }
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renewed_in_place_are_taken_by_a_reload() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    let first = write_cert(dir);
    let (cert, key) = (dir.join("cert.pem").display().to_string(), dir.join("key.pem").display().to_string());
    let listeners = format!(
        "  kumo.start_http_listener {{ listen = '127.0.0.1:0', use_tls = true, tls_certificate = '{cert}', tls_private_key = '{key}' }}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', tls_certificate = '{cert}', tls_private_key = '{key}' }}\n  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}"
    );
    // The workspace policy's own listener comes first; ours is smtp[1].
    let daemon = TestDaemon::start(&ws.policy(&listeners, "")).unwrap();
    assert_eq!(presented(daemon.http[0], false).await, first);
    assert_eq!(presented(daemon.smtp[1], true).await, first);

    let renewed = write_cert(dir);
    let outcome = daemon_reload(&daemon).await;
    let updated = outcome["changes"]["listeners"]["updated"].to_string();
    assert!(updated.contains("http") && updated.contains("smtp"), "{outcome}");
    assert_eq!(presented(daemon.http[0], false).await, renewed, "HTTPS presents the renewed certificate");
    assert_eq!(presented(daemon.smtp[1], true).await, renewed, "STARTTLS presents the renewed certificate");
    daemon.stop();
}

async fn daemon_reload(daemon: &TestDaemon) -> serde_json::Value {
    // Through the plain control listener, as an operator's script would.
    let reply = http("POST", format!("http://{}/api/admin/reload/v1", daemon.http[1]), vec![], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}
