//! Shaping automation in-process: rules in a KumoMTA `shaping.toml`
//! (`[["domain".automation]]`) watch the replies; a provider's block
//! message suspends the source × site it came from (mail moves to the
//! pool's other source), a threshold rule suspends a tenant on the second
//! match, and both show as suspensions with their rule, reason and expiry.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, send_each};
use std::sync::Arc;
use std::time::Duration;

const SHAPING: &str = r#"
["default"]
connection_limit = 2

[["dest.test".automation]]
regex = "\\[TSS04\\]"
action = "Suspend"
duration = "1 hour"

[["auth.test".automation]]
regex = ["5\\.7\\.26"]
action = "SuspendTenant"
trigger = { Threshold = "2/10m" }
duration = "30 minutes"
"#;

/// A policy from `init_extra` and `events` whose top sets up `shaper` with
/// automation from `shaping`, as KumoMTA's guide lays it out.
fn automated_policy(ws: &Workspace, shaping: &str, init_extra: &str, events: &str) -> std::path::PathBuf {
    let file = ws.dir.path().join("shaping.toml");
    std::fs::write(&file, shaping).unwrap();
    let path = ws.policy(init_extra, events);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "local kumo = require 'kumo'\n",
        &format!(
            "local kumo = require 'kumo'\nlocal shaper = require('policy-extras.shaping'):setup_with_automation {{ extra_files = {{ '{}' }} }}\n",
            file.display()
        ),
        1,
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn policy(ws: &Workspace, sink: std::net::SocketAddr) -> std::path::PathBuf {
    let init = r#"
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2' }
  kumo.define_egress_source { name = 'ip-3', source_address = '127.0.0.3' }
  kumo.define_egress_pool { name = 'both', entries = { { name = 'ip-2' }, { name = 'ip-3' } } }
  shaper.setup_publish()
"#;
    let events = format!(
        r#"kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('tenant', 'acme') end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'both', retry_interval = 1, generate_bounces = false,
    protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }} }}
end)"#
    );
    automated_policy(ws, SHAPING, init, &events)
}

fn to(rcpt: &str) -> (String, String, String) {
    ("s@sender.test".into(), rcpt.into(), format!("From: <s@sender.test>\r\nTo: <{rcpt}>\r\nSubject: x\r\n\r\nhi\r\n"))
}

async fn suspensions(daemon: &TestDaemon) -> Vec<serde_json::Value> {
    let reply = http("GET", format!("http://{}/api/admin/suspend/v1", daemon.http[0]), vec![], None).await;
    reply.json().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automation_rules_suspend_the_site_or_tenant_they_match() {
    let sink = Sink::start_with(Arc::new(|m, _| {
        if m.recipients[0].ends_with("@auth.test") {
            (550, "5.7.26 This mail has been blocked because the sender is unauthenticated.".into())
        } else if m.peer.ip().to_string() == "127.0.0.2" {
            (421, "4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to user complaints".into())
        } else {
            (250, "2.0.0 OK".into())
        }
    }))
    .await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&policy(&ws, sink.addr())).unwrap();
    let local = "127.0.0.1".parse().unwrap();
    let mail: Vec<_> = (0..6).map(|i| to(&format!("r{i}@dest.test"))).collect();
    assert!(send_each(daemon.smtp[0], local, mail).await.iter().all(Result::is_ok));
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 6).await, "all delivered");
    assert!(sink.received().iter().all(|m| m.peer.ip().to_string() == "127.0.0.3"), "from the unblocked source");
    let list = suspensions(&daemon).await;
    let site = list.iter().find(|s| s["kind"] == "ready_queue").expect("the site is suspended");
    assert_eq!(site["creator"], "automation: dest.test#1");
    assert!(site["target"].as_str().unwrap().starts_with("ip-2->"), "{site}");
    assert!(site["reason"].as_str().unwrap().contains("[TSS04]"), "{site}");
    assert!(site["duration"].as_str().unwrap().starts_with("59m"), "{site}");
    assert_eq!(list.iter().filter(|s| s["kind"] == "ready_queue").count(), 1, "one action while it holds");

    // The threshold rule waits for its second match.
    assert!(send_each(daemon.smtp[0], local, vec![to("a@auth.test")]).await[0].is_ok());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!suspensions(&daemon).await.iter().any(|s| s["kind"] == "queue"), "one match is not enough");
    assert!(send_each(daemon.smtp[0], local, vec![to("b@auth.test")]).await[0].is_ok());
    let tenant = || async { suspensions(&daemon).await.into_iter().find(|s| s["kind"] == "queue") };
    let mut found = None;
    for _ in 0..50 {
        found = tenant().await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = found.expect("the tenant is suspended at the second match");
    assert_eq!(found["target"], "domain=auth.test tenant=acme");
    assert_eq!(found["creator"], "automation: auth.test#1");
    let metrics = http("GET", format!("http://{}/metrics", daemon.http[0]), vec![], None).await.body;
    assert!(
        metrics.contains("petrel_shaping_automation_total{action=\"Suspend\",rule=\"dest.test#1\"} 1"),
        "{metrics}"
    );
    daemon.stop();
}

#[test]
fn a_bad_automation_rule_names_its_file_and_block() {
    let ws = Workspace::new();
    let shaping = "[[\"x.test\".automation]]\nregex = \"(unclosed\"\naction = \"Suspend\"\nduration = \"1h\"\n";
    let path = automated_policy(&ws, shaping, "", "");
    let err = TestDaemon::start(&path).err().expect("refused");
    assert!(
        err.contains("shaping.toml") && err.contains("[\"x.test\"].automation[1]") && err.contains("regex"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_config_rule_slows_the_site_down_for_its_duration() {
    let sink = Sink::start_with(Arc::new(|m, attempt| {
        if m.recipients[0].starts_with("first@") && attempt == 1 {
            (421, "4.7.0 RL0000 rate limited, slow down".into())
        } else {
            (250, "2.0.0 OK".into())
        }
    }))
    .await;
    let ws = Workspace::new();
    let shaping = "[[\"rate.test\".automation]]\nregex = \"RL0000\"\naction = { SetConfig = { name = \"max_message_rate\", value = \"2/s\" } }\nduration = \"1 hour\"\n";
    let init = "  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }\n  shaper.setup_publish()\n";
    let events = format!(
        "kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n{}",
        petrel_e2e::smart_host_events(sink.addr(), "retry_interval = 1, generate_bounces = false,")
    );
    let daemon = TestDaemon::start(&automated_policy(&ws, shaping, init, &events)).unwrap();
    let local = "127.0.0.1".parse().unwrap();
    assert!(send_each(daemon.smtp[0], local, vec![to("first@rate.test")]).await[0].is_ok());
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await, "delivered on its retry");
    let list = suspensions(&daemon).await;
    let o = list.iter().find(|s| s["kind"] == "config_override").expect("the override is listed");
    assert!(o["target"].as_str().unwrap().ends_with(": max_message_rate = 2/s"), "{o}");
    assert_eq!(o["creator"], "automation: rate.test#1");
    // Six more go out at 2/s: at least 2.5 s from the first to the last.
    let start = std::time::Instant::now();
    let mail: Vec<_> = (0..6).map(|i| to(&format!("m{i}@rate.test"))).collect();
    assert!(send_each(daemon.smtp[0], local, mail).await.iter().all(Result::is_ok));
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 7).await);
    assert!(start.elapsed() >= Duration::from_millis(2400), "paced: {:?}", start.elapsed());
    daemon.stop();
}
