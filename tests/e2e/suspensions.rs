//! Suspensions as an operator relies on them: each has a reason, a
//! creator and an expiry, is listed by `GET /api/admin/suspend/v1`, holds
//! across a restart, ends by itself when it expires, and can be lifted
//! early by its id (KumoMTA's request and answer shapes).

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, send_each, smart_host_events};
use serde_json::{Value, json};
use std::time::Duration;

const INIT: &str = r#"
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2' }
"#;

async fn call(daemon: &TestDaemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let headers = vec![("Content-Type", "application/json".to_string())];
    let reply =
        http(method, format!("http://{}{path}", daemon.http[0]), headers, body.map(|b| b.to_string().into_bytes()))
            .await;
    (reply.status, reply.json())
}

fn to(rcpt: &str) -> (String, String, String) {
    ("s@sender.test".into(), rcpt.into(), format!("From: <s@sender.test>\r\nTo: <{rcpt}>\r\nSubject: x\r\n\r\nhi\r\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_carry_reasons_survive_restarts_expire_and_lift_by_id() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy(INIT, &smart_host_events(sink.addr(), "retry_interval = 1,"));
    let daemon = TestDaemon::start(&policy).unwrap();
    let (status, held) = call(
        &daemon,
        "POST",
        "/api/admin/suspend/v1",
        Some(json!({ "domain": "held.test", "reason": "blocked at held.test", "duration": "1h" })),
    )
    .await;
    assert_eq!(status, 200, "{held}");
    let held_id = held["id"].as_str().unwrap().to_string();
    let (_, brief) = call(
        &daemon,
        "POST",
        "/api/admin/suspend/v1",
        Some(json!({ "domain": "brief.test", "reason": "a pause", "duration": "3s" })),
    )
    .await;
    let (status, source) = call(
        &daemon,
        "POST",
        "/api/admin/suspend-ready-q/v1",
        Some(json!({ "name": "ip-2", "reason": "warming", "duration": "1h" })),
    )
    .await;
    assert_eq!(status, 200, "{source}");
    let (status, bad) =
        call(&daemon, "POST", "/api/admin/suspend/v1", Some(json!({ "domain": "x.test", "duration": "soon" }))).await;
    assert_eq!(status, 400, "an unreadable duration is refused: {bad}");

    let (_, list) = call(&daemon, "GET", "/api/admin/suspend/v1", None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    let entry = list.iter().find(|s| s["id"] == held_id.as_str()).unwrap();
    assert_eq!(
        (entry["kind"].as_str(), entry["reason"].as_str(), entry["creator"].as_str()),
        (Some("queue"), Some("blocked at held.test"), Some("admin"))
    );
    assert!(entry["target"].as_str().unwrap().contains("domain=held.test"));
    assert!(entry["expires"].is_string() && entry["duration"].as_str().unwrap().starts_with("59m"), "{entry}");
    assert!(list.iter().any(|s| s["kind"] == "source" && s["target"] == "ip-2" && s["reason"] == "warming"));

    let local = "127.0.0.1".parse().unwrap();
    let sent = send_each(daemon.smtp[0], local, vec![to("a@held.test"), to("b@brief.test"), to("c@free.test")]).await;
    assert!(sent.iter().all(Result::is_ok));
    let got = |r: &str| sink.received().iter().any(|m| m.recipients[0] == r);
    assert!(eventually(Duration::from_secs(10), || got("c@free.test")).await);
    // The brief suspension ends by itself; the long one holds.
    assert!(eventually(Duration::from_secs(10), || got("b@brief.test")).await, "expired on its own");
    let (_, list) = call(&daemon, "GET", "/api/admin/suspend/v1", None).await;
    assert!(list.as_array().unwrap().iter().all(|s| s["id"] != brief["id"]), "the expired one is gone");
    assert!(!got("a@held.test"));
    let (_, summary) = call(&daemon, "GET", "/api/admin/queue-summary/v1", None).await;
    let queue = summary["scheduled"].as_array().unwrap().iter().find(|q| q["name"] == "held.test").unwrap().clone();
    assert!(queue["suspension"].as_str().unwrap().contains("blocked at held.test (by admin, 59m"), "{queue}");
    daemon.stop();

    // A restart keeps what was suspended, with its reason.
    let daemon = TestDaemon::start(&policy).unwrap();
    let (_, list) = call(&daemon, "GET", "/api/admin/suspend/v1", None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "the queue and the source suspension: {list:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!got("a@held.test"), "still held after the restart");
    // Lifted early by its id.
    let (status, lifted) = call(&daemon, "DELETE", "/api/admin/suspend/v1", Some(json!({ "id": held_id }))).await;
    assert_eq!((status, lifted["affected"].as_u64()), (200, Some(1)));
    assert!(eventually(Duration::from_secs(10), || got("a@held.test")).await, "released");
    let (_, list) = call(&daemon, "GET", "/api/admin/suspend/v1", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    daemon.stop();
}
