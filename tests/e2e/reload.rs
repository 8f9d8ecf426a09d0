//! Hot reload under traffic: new weights at once, bad policies refused,
//! a source removed with mail queued on it, listeners added and removed.

use petrel_e2e::{DaemonOptions, Sink, TestDaemon, Workspace, eventually, http, inject, smart_host_events};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn sources(weight_a: u32, weight_b: u32) -> String {
    format!(
        r#"  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}
  kumo.define_egress_source {{ name = 'a', source_address = '127.0.0.2' }}
  kumo.define_egress_source {{ name = 'b', source_address = '127.0.0.3' }}
  kumo.define_egress_pool {{ name = 'shared', entries = {{ {{ name = 'a', weight = {weight_a} }}, {{ name = 'b', weight = {weight_b} }} }} }}"#
    )
}

async fn reload(daemon: &TestDaemon) -> petrel_e2e::HttpReply {
    http("POST", format!("http://{}/api/admin/reload/v1", daemon.http[0]), vec![], None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_weights_apply_at_once_under_continuous_injection() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = smart_host_events(sink.addr(), "egress_pool = 'shared',");
    let options = DaemonOptions::new(ws.policy(&sources(1, 1), &events));
    let daemon = TestDaemon::start_with(options).unwrap();
    let (chunks, per_chunk, reload_after) = (20, 100, 8);
    for chunk in 0..chunks {
        if chunk == reload_after {
            // Rewrite the file; the watcher reloads it.
            ws.policy(&sources(1, 3), &events);
            let controls = daemon.controls.clone();
            assert!(
                eventually(Duration::from_secs(10), || controls.policy_generation() == 2).await,
                "the file change reloaded the policy"
            );
        }
        let base = chunk * per_chunk;
        let sent =
            inject(daemon.smtp[0], per_chunk, 2, move |i| ("s@a.example".into(), format!("r{}@d.example", base + i)))
                .await;
        assert_eq!(sent, per_chunk, "every message was acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = chunks * per_chunk;
    assert!(
        eventually(Duration::from_secs(60), || sink.received_count() >= total).await,
        "got {}",
        sink.received_count()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen: HashMap<usize, Vec<String>> = HashMap::new();
    for m in sink.received() {
        let n: usize = m.recipients[0].trim_start_matches('r').split('@').next().unwrap().parse().unwrap();
        seen.entry(n).or_default().push(m.peer.ip().to_string());
    }
    assert_eq!(seen.len(), total, "every message arrived");
    assert!(seen.values().all(|v| v.len() == 1), "none twice");
    let after: Vec<&String> = (reload_after * per_chunk..total).map(|n| &seen[&n][0]).collect();
    let from_a = after.iter().filter(|ip| ip.as_str() == "127.0.0.2").count();
    let expected = after.len() / 4;
    assert!(
        from_a.abs_diff(expected) <= 3,
        "after the reload {from_a} of {} left from a (expected ~{expected})",
        after.len()
    );
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policies_are_refused_and_traffic_continues() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = smart_host_events(sink.addr(), "egress_pool = 'shared',");
    let daemon = TestDaemon::start(&ws.policy(&sources(1, 1), &events)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 10, 1, |i| ("s@a.example".into(), format!("r{i}@d.example"))).await, 10);

    let good = std::fs::read_to_string(ws.dir.path().join("init.lua")).unwrap();
    let syntax = good.replacen("kumo.on('init', function()", "kumo.on('init', function()\n  local = 1", 1);
    std::fs::write(ws.dir.path().join("init.lua"), syntax).unwrap();
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let errors = reply.json()["errors"].to_string();
    assert!(errors.contains("init.lua:3:"), "{errors}");
    assert_eq!(inject(daemon.smtp[0], 10, 1, |i| ("s@a.example".into(), format!("x{i}@d.example"))).await, 10);

    let unknown = good.replace("{ name = 'b', weight = 1 }", "{ name = 'ghost', weight = 1 }");
    std::fs::write(ws.dir.path().join("init.lua"), unknown).unwrap();
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 422);
    assert!(reply.json()["errors"].to_string().contains("unknown source \\\"ghost\\\""), "{}", reply.body);
    assert_eq!(daemon.controls.policy_generation(), 1, "the running policy stayed");
    assert_eq!(inject(daemon.smtp[0], 10, 1, |i| ("s@a.example".into(), format!("y{i}@d.example"))).await, 10);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 30).await);
    let metrics = http("GET", format!("http://{}/metrics", daemon.http[0]), vec![], None).await.body;
    let failures = metrics.lines().find(|l| l.starts_with("petrel_policy_reload_failures ")).unwrap();
    let failures: u64 = failures.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(failures >= 2, "{failures}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_source_moves_its_queued_mail_to_the_rest_of_the_pool() {
    // The sink defers everything from 127.0.0.2, so mail piles up on source a.
    let sink = Sink::start_with(Arc::new(|m, _| {
        if m.peer.ip().to_string() == "127.0.0.2" { (451, "4.7.0 not now".into()) } else { (250, "ok".into()) }
    }))
    .await;
    let ws = Workspace::new();
    // Retries stay 1 s apart: however many times a message was deferred
    // before the reload, its next attempt (from b) comes within the wait.
    let events = smart_host_events(sink.addr(), "egress_pool = 'shared', retry_interval = 1, max_retry_interval = 1,");
    let only_a = sources(1, 0).replace(", { name = 'b', weight = 0 }", "");
    let daemon = TestDaemon::start(&ws.policy(&only_a, &events)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 20, 2, |i| ("s@a.example".into(), format!("q{i}@d.example"))).await, 20);
    let controls = daemon.controls.clone();
    assert!(eventually(Duration::from_secs(10), || controls.waiting() == 20).await, "all deferred on a");

    // Source a disappears; the pool now holds only b.
    let only_b = sources(0, 1)
        .replace("{ name = 'a', weight = 0 }, ", "")
        .replace("  kumo.define_egress_source { name = 'a', source_address = '127.0.0.2' }\n", "");
    ws.policy(&only_b, &events);
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["changes"]["sources"]["removed"].to_string().contains("\"a\""), "{}", reply.body);
    assert!(eventually(Duration::from_secs(30), || sink.received_count() == 20).await, "got {}", sink.received_count());
    assert!(sink.received().iter().all(|m| m.peer.ip().to_string() == "127.0.0.3"));
    drop(controls);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_and_go_with_the_policy() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = smart_host_events(sink.addr(), "");
    let http_only = "  kumo.start_http_listener { listen = '127.0.0.1:0' }";
    let daemon = TestDaemon::start(&ws.policy(http_only, &events)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let second = format!(
        "{http_only}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}', relay_hosts = {{ '127.0.0.1' }} }}"
    );
    ws.policy(&second, &events);
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["changes"]["listeners"]["started"].to_string().contains(&port.to_string()), "{}", reply.body);
    let added: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(inject(added, 3, 1, |i| ("s@a.example".into(), format!("n{i}@d.example"))).await, 3);
    assert_eq!(inject(daemon.smtp[0], 3, 1, |i| ("s@a.example".into(), format!("o{i}@d.example"))).await, 3);

    ws.policy(http_only, &events);
    let reply = reload(&daemon).await;
    assert!(reply.json()["changes"]["listeners"]["stopped"].to_string().contains(&port.to_string()), "{}", reply.body);
    let refused = eventually(Duration::from_secs(5), || std::net::TcpStream::connect(added).is_err()).await;
    assert!(refused, "the removed listener refuses connections");
    assert_eq!(
        inject(daemon.smtp[0], 3, 1, |i| ("s@a.example".into(), format!("p{i}@d.example"))).await,
        3,
        "the first listener served throughout"
    );
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 9).await);
    daemon.stop();
}

async fn banner(addr: std::net::SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listener_keeps_its_socket_and_an_unbindable_one_refuses_the_reload() {
    let ws = Workspace::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let with = |hostname: &str| {
        format!(
            "  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}', hostname = '{hostname}' }}"
        )
    };
    let daemon = TestDaemon::start(&ws.policy(&with("before.test"), "")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(banner(addr).await.contains("before.test"));
    ws.policy(&with("after.test"), "");
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["changes"]["listeners"]["updated"].to_string().contains(&port.to_string()), "{}", reply.body);
    assert!(banner(addr).await.contains("after.test"), "same socket, new settings");

    // A port something else holds: the reload is refused as a whole.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let clash = format!("{}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{busy}' }}", with("clash.test"));
    ws.policy(&clash, "");
    let reply = reload(&daemon).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains(&busy.to_string()), "{}", reply.body);
    assert_eq!(daemon.controls.policy_generation(), 2);
    assert!(banner(addr).await.contains("after.test"), "nothing of the refused policy applied");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_nothing_changed_is_a_no_op_and_a_changed_module_counts() {
    let ws = Workspace::new();
    std::fs::write(ws.dir.path().join("settings.lua"), "return { retry = '20m' }\n").unwrap();
    let events = "local settings = require 'settings'\nkumo.on('get_queue_config', function()\n  return kumo.make_queue_config { retry_interval = settings.retry }\nend)";
    let policy = ws.policy("  kumo.start_http_listener { listen = '127.0.0.1:0' }", events);
    let daemon = TestDaemon::start(&policy).unwrap();

    let same = reload(&daemon).await.json();
    assert_eq!((same["unchanged"].as_bool(), same["generation"].as_u64()), (Some(true), Some(1)), "{same}");
    // Rewriting the same bytes (what `touch` and many editors do) is no change either.
    std::fs::write(&policy, std::fs::read(&policy).unwrap()).unwrap();
    assert_eq!(reload(&daemon).await.json()["unchanged"], true);
    assert_eq!(daemon.controls.policy_generation(), 1);

    std::fs::write(ws.dir.path().join("settings.lua"), "return { retry = '5m' }\n").unwrap();
    let changed = reload(&daemon).await.json();
    assert_eq!((changed["unchanged"].as_bool(), changed["generation"].as_u64()), (Some(false), Some(2)), "{changed}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_leaves_a_path_alone_keeps_its_connection() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = smart_host_events(sink.addr(), "");
    let init = |extra: &str| format!("  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}\n{extra}");
    let daemon = TestDaemon::start(&ws.policy(&init(""), &events)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r1@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert_eq!(sink.total_connections(), 1);

    // An unrelated pool appears: the default source's path is untouched.
    let other = "  kumo.define_egress_source { name = 'x', source_address = '127.0.0.9' }\n  kumo.define_egress_pool { name = 'other', entries = { { name = 'x' } } }";
    ws.policy(&init(other), &events);
    let reply = reload(&daemon).await;
    assert_eq!(reply.json()["changes"]["pools"]["added"], serde_json::json!(["other"]), "{}", reply.body);
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r2@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 2).await);
    assert_eq!(sink.total_connections(), 1, "the idle connection was kept across the reload");

    // A changed path config (a new EHLO name) retires it.
    let path = "kumo.on('get_egress_path_config', function() return kumo.make_egress_path { ehlo_domain = 'renamed.test' } end)";
    ws.policy(&init(other), &format!("{events}\n{path}"));
    assert_eq!(reload(&daemon).await.status, 200);
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r3@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 3).await);
    assert_eq!(sink.received()[2].ehlo, "renamed.test");
    assert_eq!(sink.total_connections(), 2, "a new connection for the new path settings");
    daemon.stop();
}
