//! `petrel route` and real delivery come from one routing plan: for each
//! case the explanation names the source, port and EHLO the sink then sees.

use petrel_e2e::{DnsServer, Sink, TestDaemon, Workspace, Zone, eventually, http, inject};
use petrel_telemetry::RecordType;
use serde_json::{Value, json};
use std::time::Duration;

const SOURCES: &str = r#"  kumo.start_http_listener { listen = '127.0.0.1:0' }
  kumo.define_egress_source { name = 'a', source_address = '127.0.0.2', ehlo_domain = 'a.petrel.test' }
  kumo.define_egress_source { name = 'b', source_address = '127.0.0.3', ehlo_domain = 'b.petrel.test' }
  kumo.define_egress_pool { name = 'ab', entries = { { name = 'a' }, { name = 'b' } } }"#;

async fn explain(daemon: &TestDaemon, recipient: &str, meta: Value) -> Value {
    let body = json!({ "sender": "s@a.example", "recipient": recipient, "meta": meta });
    let url = format!("http://{}/api/admin/route/v1", daemon.http[0]);
    let reply = http("POST", url, vec![], Some(body.to_string().into_bytes())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Route, then deliver, the one message to `recipient`; both must agree on
/// the source address, the port and the EHLO name.
async fn agree(daemon: &TestDaemon, sink: &Sink, recipient: &'static str) -> Value {
    let route = explain(daemon, recipient, json!({})).await;
    let before = sink.received_count();
    assert_eq!(inject(daemon.smtp[0], 1, 1, move |_| ("s@a.example".into(), recipient.into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == before + 1).await, "{route}");
    let got = sink.received().pop().unwrap();
    let address = route["source_address"].as_str().unwrap_or("127.0.0.1");
    assert_eq!(got.peer.ip().to_string(), address, "source: {route}");
    assert_eq!(got.ehlo, route["ehlo_domain"].as_str().unwrap(), "EHLO: {route}");
    let first_host = route["hosts"][0].as_str().unwrap();
    assert!(first_host.starts_with(&format!("127.0.0.1:{}", sink.addr().port())), "port: {route}");
    route
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_delivery_agree_on_source_port_and_ehlo() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let port = sink.addr().port();
    let events = format!(
        r#"kumo.on('get_queue_config', function(domain)
  if domain == 'port.example' then
    return kumo.make_queue_config {{ egress_pool = 'ab', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }} }}
  elseif domain == 'nopool.example' then
    return kumo.make_queue_config {{ egress_pool = 'gone', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }} }}
  end
  return kumo.make_queue_config {{ egress_pool = 'ab', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }} }}
end)"#
    );
    let daemon = TestDaemon::start(&ws.policy(SOURCES, &events)).unwrap();

    // A smart host with its own port, through a weighted pool.
    let first = agree(&daemon, &sink, "r1@port.example").await;
    assert_eq!(first["egress_pool"], "ab");
    // A suspended source is skipped by both, and the route says so.
    let other = if first["egress_source"] == "a" { "b" } else { "a" };
    daemon.controls.suspend_source(other);
    for _ in 0..2 {
        let route = agree(&daemon, &sink, "r2@port.example").await;
        assert_eq!(route["egress_source"], first["egress_source"]);
        assert!(route["skipped_sources"].to_string().contains(&format!("{other}: suspended")), "{route}");
    }
    daemon.controls.resume_source(other);
    // A pool that is not defined falls back to the default pool in both.
    let fallback = agree(&daemon, &sink, "r3@nopool.example").await;
    assert_eq!(fallback["egress_pool"], "default");
    assert!(fallback["pool_reason"].as_str().unwrap().contains("\"gone\" is not defined"), "{fallback}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_delivery_agree_on_a_source_remote_port() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let init = format!(
        "  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}\n  kumo.define_egress_source {{ name = 'nat', source_address = '127.0.0.2', remote_port = {} }}\n  kumo.define_egress_pool {{ name = 'default', entries = {{ {{ name = 'nat' }} }} }}",
        sink.addr().port()
    );
    let events = "kumo.on('get_queue_config', function() return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1' } } } } end)";
    let daemon = TestDaemon::start(&ws.policy(&init, events)).unwrap();
    let route = agree(&daemon, &sink, "r@b.example").await;
    assert_eq!(route["egress_source"], "nat");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_explains_prohibited_mx_hosts_and_dns_failures_as_delivery_meets_them() {
    let dns = DnsServer::start(
        Zone::new().mx("loop.test", 10, "mx.loop.test").addr("mx.loop.test", "127.0.0.1".parse().unwrap()),
    )
    .await;
    let ws = Workspace::new();
    let init = format!(
        "  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}\n  kumo.dns.configure_resolver {{ name_servers = {{ '{}' }} }}",
        dns.addr()
    );
    let events = "kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1h' } end)";
    let daemon = TestDaemon::start(&ws.policy(&init, events)).unwrap();

    let route = explain(&daemon, "r@loop.test", json!({})).await;
    assert!(route["hosts"][0].as_str().unwrap().contains("127.0.0.1 prohibited"), "{route}");
    let missing = explain(&daemon, "r@missing.test", json!({})).await;
    assert!(missing["dns_error"].is_string(), "a DNS failure is explained, not a 400: {missing}");
    assert_eq!(
        (missing["egress_pool"].as_str(), missing["egress_source"].as_str()),
        (Some("default"), Some("default"))
    );

    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@loop.test".into())).await, 1);
    let bounced = || ws.records().iter().any(|r| r.kind == RecordType::Bounce);
    assert!(eventually(Duration::from_secs(10), bounced).await, "delivery refuses the prohibited host too");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_delivery_agree_over_ipv6_and_lmtp() {
    let sink = Sink::start_at("[::1]:0".parse().unwrap(), std::sync::Arc::new(|_, _| (250, "2.0.0 ok".into()))).await;
    let ws = Workspace::new();
    let init = "  kumo.start_http_listener { listen = '127.0.0.1:0' }\n  kumo.define_egress_source { name = 'v6', source_address = '::1', ehlo_domain = 'v6.petrel.test' }\n  kumo.define_egress_pool { name = 'default', entries = { { name = 'v6' } } }";
    let events = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '{}' }} }} }} }} end)\nkumo.on('get_egress_path_config', function() return kumo.make_egress_path {{ use_lmtp = true }} end)",
        sink.addr()
    );
    let daemon = TestDaemon::start(&ws.policy(init, &events)).unwrap();
    let route = explain(&daemon, "r@v6.example", json!({})).await;
    assert_eq!(route["hosts"][0].as_str().unwrap(), format!("[::1]:{} (::1)", sink.addr().port()), "{route}");
    assert_eq!(
        (route["egress_path"]["use_lmtp"].as_bool(), route["ehlo_domain"].as_str()),
        (Some(true), Some("v6.petrel.test"))
    );
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@v6.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    let got = sink.received().pop().unwrap();
    assert_eq!((got.peer.ip().to_string(), got.ehlo.as_str()), ("::1".to_string(), "v6.petrel.test"));
    assert!(sink.lmtp_sessions() >= 1, "delivered over LMTP, as route said");
    daemon.stop();
}
