//! The per-message tools with the real `petrel` binary against a daemon in
//! process: `inject` prints ids, `queue list` shows each waiting message,
//! `hold` / `release` / `delete` / `bounce ID` / `flush` act on them.

mod common;

use petrel::{Daemon, DaemonOptions};
use petrel_testkit::{Sink, eventually};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

async fn petrel(endpoint: &str, list: &[&str]) -> String {
    let mut args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    if list[0] != "logs" {
        args.extend(["--endpoint".to_string(), endpoint.to_string()]);
    }
    let out = tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_petrel")).args(&args).output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "petrel {list:?} failed: {stdout}{stderr}");
    stdout.into_owned()
}

/// A sink deferring every first attempt (later ones accepted), and a
/// policy sending everything there with hourly retries.
async fn setup(dir: &tempfile::TempDir) -> (Sink, std::path::PathBuf) {
    let sink = Sink::start_with(Arc::new(|_, attempt| {
        if attempt == 1 { (451, "4.3.0 come back later".into()) } else { (250, "2.0.0 ok".into()) }
    }))
    .await;
    let policy = common::policy(
        dir.path(),
        "  kumo.start_http_listener { listen = '127.0.0.1:0' }",
        &common::smart_host(sink.addr(), "retry_interval = '1h', generate_bounces = false,"),
    );
    (sink, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_hold_release_delete_bounce_and_flush_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let (sink, policy) = setup(&dir).await;
    let daemon = Daemon::start(DaemonOptions::new(policy)).await.unwrap();
    let endpoint = format!("http://{}", daemon.http_addrs()[0]);
    let mut inject = vec!["inject", "--from", "s@a.example"];
    let rcpts: Vec<String> = (0..5).map(|i| format!("r{i}@dest.example")).collect();
    for r in &rcpts {
        inject.extend(["--to", r.as_str()]);
    }
    let out = petrel(&endpoint, &inject).await;
    let ids: Vec<String> =
        out.lines().filter_map(|l| l.trim().strip_prefix("id ")).map(|s| s.trim().to_string()).collect();
    assert_eq!(ids.len(), 5, "one id per recipient:\n{out}");
    assert!(eventually(Duration::from_secs(10), || rcpts.iter().all(|r| sink.attempts(r) == 1)).await);

    let list = petrel(&endpoint, &["queue", "list"]).await;
    for id in &ids {
        assert!(list.contains(id.as_str()), "{id} missing from:\n{list}");
    }
    assert!(list.contains("451 4.3.0 come back later") && list.contains("5 message(s)"), "{list}");
    let line = list.lines().find(|l| l.contains(&ids[1])).unwrap();
    assert!(line.contains("r1@dest.example") && line.contains("in "), "next attempt later: {line}");

    assert!(petrel(&endpoint, &["hold", &ids[0]]).await.contains("hold: done"));
    let json = petrel(&endpoint, &["queue", "list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let held: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["held"] == true)
        .map(|m| m["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(held, vec!["r0@dest.example"]);
    assert!(petrel(&endpoint, &["delete", &ids[3]]).await.contains("delete: done"));
    assert!(petrel(&endpoint, &["bounce", &ids[4], "--reason", "customer asked"]).await.contains("bounce: done"));
    assert!(petrel(&endpoint, &["release", &ids[1]]).await.contains("not held"));

    let flushed = petrel(&endpoint, &["flush"]).await;
    assert!(flushed.contains("flushed: 2 message(s)"), "r1 and r2, not the held r0: {flushed}");
    let got = |r: &str| sink.received().iter().any(|m| m.recipients[0] == r);
    assert!(eventually(Duration::from_secs(10), || got("r1@dest.example") && got("r2@dest.example")).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.attempts("r0@dest.example"), 1, "a held message is not sent");
    assert!(!got("r3@dest.example") && !got("r4@dest.example"), "deleted and bounced ones are gone");

    assert!(petrel(&endpoint, &["release", &ids[0]]).await.contains("release: done"));
    assert!(eventually(Duration::from_secs(10), || got("r0@dest.example")).await, "released: due now");
    assert!(petrel(&endpoint, &["release", &ids[0]]).await.contains("not waiting"));
    assert!(petrel(&endpoint, &["hold", "not-an-id"]).await.contains("not a spool id"));
    assert!(petrel(&endpoint, &["queue", "list"]).await.contains("no messages are waiting"));

    let logs = petrel(&endpoint, &["logs", "tail", "--dir", &format!("{root}/logs"), "-n", "100"]).await;
    let admin: Vec<&str> = logs.lines().filter(|l| l.contains("\"AdminBounce\"")).collect();
    assert!(admin.iter().any(|l| l.contains("r3@dest.example") && l.contains("deleted by the operator")), "{logs}");
    assert!(admin.iter().any(|l| l.contains("r4@dest.example") && l.contains("customer asked")), "{logs}");
    // `top --once`: the frame a person would see, totals included.
    let frame = petrel(&endpoint, &["top", "--once"]).await;
    let delivered = frame.lines().find(|l| l.contains(" delivered ")).unwrap_or_else(|| panic!("{frame}"));
    assert!(delivered.trim_end_matches(['│', ' ']).ends_with(" 3"), "three delivered since start: {delivered}");
    let received = frame.lines().find(|l| l.contains(" received ")).unwrap();
    assert!(received.trim_end_matches(['│', ' ']).ends_with(" 5"), "{received}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, policy) = setup(&dir).await;
    let daemon = Daemon::start(DaemonOptions::new(policy.clone())).await.unwrap();
    let endpoint = format!("http://{}", daemon.http_addrs()[0]);
    let out = petrel(&endpoint, &["inject", "--from", "s@a.example", "--to", "kept@dest.example"]).await;
    let id = out.lines().find_map(|l| l.trim().strip_prefix("id ")).unwrap().trim().to_string();
    assert!(eventually(Duration::from_secs(10), || sink.attempts("kept@dest.example") == 1).await);
    assert!(petrel(&endpoint, &["hold", &id]).await.contains("hold: done"));
    daemon.shutdown().await;

    let daemon = Daemon::start(DaemonOptions::new(policy)).await.unwrap();
    let endpoint = format!("http://{}", daemon.http_addrs()[0]);
    let json = petrel(&endpoint, &["queue", "list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["messages"][0]["id"], id.as_str());
    assert_eq!(v["messages"][0]["held"], true, "still held after the restart: {v}");
    assert!(petrel(&endpoint, &["flush"]).await.contains("flushed: 0"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.attempts("kept@dest.example"), 1, "not sent while held");
    assert!(petrel(&endpoint, &["release", &id]).await.contains("release: done"));
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await, "sent once released");
    daemon.shutdown().await;
}
