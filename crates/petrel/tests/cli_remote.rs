//! The operator commands against a daemon running in-process: the real
//! `petrel` binary, talking to the real HTTP API.

use petrel::{Daemon, DaemonOptions};
use petrel_testkit::{Sink, eventually};
use std::process::Command;
use std::time::Duration;

async fn petrel(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(&args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    })
    .await
    .unwrap()
}

fn args(list: &[&str], endpoint: &str) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend(["--endpoint".to_string(), endpoint.to_string()]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_summary_suspend_inject_and_logs_from_the_command_line() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        format!(
            r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{root}/spool' }}
  kumo.configure_local_logs {{ log_dir = '{root}/logs' }}
  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}
  kumo.define_egress_source {{ name = 'a-1', source_address = '127.0.0.2', ehlo_domain = 'a.mta.test' }}
  kumo.define_egress_pool {{ name = 'customer-a', entries = {{ {{ name = 'a-1' }} }} }}
end)
kumo.on('smtp_server_message_received', function(msg)
  if msg:sender().domain == 'a.example' then msg:set_meta('egress_pool', 'customer-a') end
end)
kumo.on('http_message_generated', function(msg)
  if msg:sender().domain == 'a.example' then msg:set_meta('egress_pool', 'customer-a') end
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '{}' }} }} }} }}
end)
"#,
            sink.addr()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(DaemonOptions::new(policy.clone())).await.unwrap();
    let endpoint = format!("http://{}", daemon.http_addrs()[0]);

    let (ok, out, err) =
        petrel(args(&["route", "--from", "news@a.example", "--to", "x@dest.example"], &endpoint)).await;
    assert!(ok, "{err}");
    for needle in ["customer-a", "a-1 (127.0.0.2)", "a.mta.test", "set by smtp_server_message_received", "mx_list"] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    let (ok, out, _) =
        petrel(args(&["route", "--from", "misc@b.example", "--to", "x@dest.example", "--json"], &endpoint)).await;
    assert!(ok);
    assert!(out.contains("\"egress_pool\": \"default\""), "{out}");

    let (ok, _, err) = petrel(args(&["suspend", "--queue", "dest.example"], &endpoint)).await;
    assert!(ok, "{err}");
    let (ok, out, err) =
        petrel(args(&["inject", "--from", "news@a.example", "--to", "y@dest.example", "--subject", "hi"], &endpoint))
            .await;
    assert!(ok && out.contains("1 accepted"), "{out}{err}");
    let (ok, out, _) = petrel(args(&["queue", "summary"], &endpoint)).await;
    assert!(ok);
    let line = out.lines().find(|l| l.contains("dest.example")).unwrap_or_else(|| panic!("no queue line in:\n{out}"));
    assert!(line.contains("suspended") && line.contains(" 1 "), "{line}");
    assert_eq!(sink.received_count(), 0, "held while suspended");
    // A pool that does not exist is refused; nothing moves to the default IP.
    let (ok, _, err) = petrel(args(&["rebind", "--queue", "dest.example", "--to-pool", "nope"], &endpoint)).await;
    assert!(!ok, "rebind to an unknown pool must fail");
    assert!(err.contains("422") && err.contains("no egress pool named \"nope\""), "{err}");

    // The Reception record names the message; inspect shows it, body included.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, logs, _) = petrel(vec!["logs".into(), "tail".into(), "--dir".into(), format!("{root}/logs")]).await;
    let reception: serde_json::Value =
        serde_json::from_str(logs.lines().find(|l| l.contains("Reception")).unwrap()).unwrap();
    let id = reception["id"].as_str().unwrap().to_string();
    let (ok, out, err) = petrel(args(&["inspect", &id, "--body"], &endpoint)).await;
    assert!(ok, "{err}");
    assert!(out.contains("y@dest.example") && out.contains("Subject: hi") && out.contains("meta.egress_pool"), "{out}");

    let (ok, _, _) = petrel(args(&["resume", "--queue", "dest.example"], &endpoint)).await;
    assert!(ok);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert_eq!(sink.received()[0].peer.ip().to_string(), "127.0.0.2", "customer A's source");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, out, err) = petrel(vec!["logs".into(), "tail".into(), "--dir".into(), format!("{root}/logs")]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"type\":\"Reception\"") && out.contains("\"type\":\"Delivery\""), "{out}");
    daemon.shutdown().await;

    let (ok, _, err) = petrel(args(&["queue", "summary"], &endpoint)).await;
    assert!(!ok);
    assert!(err.contains("cannot reach the daemon"), "{err}");
}
