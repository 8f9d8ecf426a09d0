//! The HTTP API as an application and an operator use it.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, smart_host_events};
use petrel_telemetry::RecordType;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

const HTTP: &str = "  kumo.start_http_listener { listen = '127.0.0.1:0' }";

fn url(daemon: &TestDaemon, path: &str) -> String {
    format!("http://{}{path}", daemon.http[0])
}

async fn post_json(daemon: &TestDaemon, path: &str, body: &serde_json::Value) -> petrel_e2e::HttpReply {
    let headers = vec![("Content-Type", "application/json".to_string())];
    http("POST", url(daemon, path), headers, Some(serde_json::to_vec(body).unwrap())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_recipients_with_their_own_substitutions() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy(HTTP, &smart_host_events(sink.addr(), ""))).unwrap();
    let recipients: Vec<_> = (0..50)
        .map(|i| json!({ "email": format!("user{i}@dest.example"), "name": format!("User {i}"), "substitutions": { "code": i * 7 } }))
        .collect();
    let request = json!({
        "envelope_sender": "news@sender.example",
        "recipients": recipients,
        "substitutions": { "brand": "Petrel" },
        "content": {
            "subject": "{{ brand }} code for {{ name }}",
            "from": { "email": "news@sender.example", "name": "News" },
            "text_body": "Hello {{ name }}, your code is {{ code }} ({{ email }}).",
            "html_body": "<p>Hello {{ name }}</p>"
        }
    });
    let reply = post_json(&daemon, "/api/inject/v1", &request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["success_count"], 50);
    assert_eq!(reply.json()["fail_count"], 0);
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 50).await);
    for m in sink.received() {
        let n: usize = m.recipients[0].trim_start_matches("user").split('@').next().unwrap().parse().unwrap();
        let text = String::from_utf8_lossy(&m.data).to_string();
        assert!(text.contains(&format!("Subject: Petrel code for User {n}\r\n")), "{text}");
        assert!(text.contains(&format!("your code is {} (user{n}@dest.example)", n * 7)), "{text}");
        assert!(text.contains(&format!("To: \"User {n}\" <user{n}@dest.example>")), "{text}");
        assert!(text.contains("multipart/alternative"));
    }
    daemon.stop();
    let receptions = ws.records().into_iter().filter(|r| r.kind == RecordType::Reception).collect::<Vec<_>>();
    assert_eq!(receptions.len(), 50);
    assert!(receptions.iter().all(|r| r.reception_protocol.as_deref() == Some("HTTP")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_store_nothing() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy(HTTP, &smart_host_events(sink.addr(), ""))).unwrap();
    let good = json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }], "content": "Subject: x\n\nbody\n" });

    let malformed =
        http("POST", url(&daemon, "/api/inject/v1"), vec![], Some(b"{\"envelope_sender\": ".to_vec())).await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert!(malformed.json()["error"].as_str().unwrap().contains("EOF"), "{}", malformed.body);

    let cases = [
        (json!({ "recipients": [{ "email": "b@d.example" }], "content": "x" }), "envelope_sender"),
        (
            json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }, { "email": "not an address" }], "content": "x" }),
            "recipients[1].email",
        ),
        (
            json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }], "content": { "subject": "{{ unclosed", "text_body": "x" } }),
            "content.subject",
        ),
        (
            json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example", "nmae": "typo" }], "content": "x" }),
            "recipients[0]",
        ),
        (json!({ "envelope_sender": "a@s.example", "recipients": [], "content": "x" }), "recipients"),
    ];
    for (body, field) in cases {
        let reply = post_json(&daemon, "/api/inject/v1", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.json()["error"].as_str().unwrap().contains(field), "{field} not named in {}", reply.body);
    }

    // 2 MB is the default limit, raw or after gzip decompression.
    let mut huge = good.clone();
    huge["content"] = json!(format!("Subject: x\n\n{}\n", "a".repeat(3 * 1024 * 1024)));
    // The client gets the reply, not a reset, though it sends past the limit.
    let too_big = post_json(&daemon, "/api/inject/v1", &huge).await;
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert!(too_big.json()["error"].as_str().unwrap().contains("byte limit"), "{}", too_big.body);
    let gzip = |value: &serde_json::Value| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&serde_json::to_vec(value).unwrap()).unwrap();
        encoder.finish().unwrap()
    };
    let gz_headers =
        || vec![("Content-Type", "application/json".to_string()), ("Content-Encoding", "gzip".to_string())];
    let bomb = gzip(&huge);
    assert!(bomb.len() < 100_000, "compresses well");
    assert_eq!(http("POST", url(&daemon, "/api/inject/v1"), gz_headers(), Some(bomb)).await.status, 413);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ws.records().iter().all(|r| r.kind != RecordType::Reception), "nothing was accepted");

    let ok = http("POST", url(&daemon, "/api/inject/v1"), gz_headers(), Some(gzip(&good))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_clients_need_credentials_the_policy_accepts() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    // The test client connects from 127.0.0.1, which this listener does not trust.
    let init = "  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.5' } }";
    let events = format!(
        "kumo.on('http_server_validate_auth_basic', function(user, password)\n  return user == 'admin' and password == 's3cret'\nend)\n{}",
        smart_host_events(sink.addr(), "")
    );
    let daemon = TestDaemon::start(&ws.policy(init, &events)).unwrap();
    let summary = url(&daemon, "/api/admin/queue-summary/v1");
    let anonymous = http("GET", summary.clone(), vec![], None).await;
    assert_eq!(anonymous.status, 401);
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        vec![(
            "Authorization",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))),
        )]
    };
    let wrong = http("GET", summary.clone(), basic("admin", "guess"), None).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains("admin") && !wrong.body.contains("password"), "no detail leaks: {}", wrong.body);
    let right = http("GET", summary.clone(), basic("admin", "s3cret"), None).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(http("GET", url(&daemon, "/metrics"), vec![], None).await.status, 401);
    assert_eq!(http("GET", url(&daemon, "/api/check-liveness/v1"), vec![], None).await.status, 200);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_sink_received() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy(HTTP, &smart_host_events(sink.addr(), ""))).unwrap();
    let recipients: Vec<_> = (0..12).map(|i| json!({ "email": format!("m{i}@d.example") })).collect();
    let request = json!({ "envelope_sender": "a@s.example", "recipients": recipients, "content": "Subject: m\n\nx\n" });
    assert_eq!(post_json(&daemon, "/api/inject/v1", &request).await.status, 200);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 12).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = http("GET", url(&daemon, "/metrics"), vec![], None).await;
    assert_eq!(reply.status, 200);
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let delivered: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "petrel_messages_total" && s.labels.get("event") == Some("Delivery"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(delivered as usize, sink.received_count());
    assert!(scrape.samples.iter().any(|s| s.metric == "petrel_lua_event_seconds_count"));
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_serves_tls() {
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ws = Workspace::new();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (ws.dir.path().join("cert.pem"), ws.dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let init = format!(
        "  kumo.start_http_listener {{ listen = '127.0.0.1:0', use_tls = true, tls_certificate = '{}', tls_private_key = '{}' }}",
        cert_path.display(),
        key_path.display()
    );
    let daemon = TestDaemon::start(&ws.policy(&init, "")).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.cert.der().to_vec())).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(daemon.http[0]).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /api/check-liveness/v1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""));
    daemon.stop();
}
