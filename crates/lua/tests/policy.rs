//! Loading real policy files: what init builds, what errors say, and how
//! per-message events reach the core through the policy traits.

mod common;

use common::conn;
use petrel_delivery::EgressPolicy;
use petrel_lua::PolicyEngine;
use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{DeliveryProtocol, QueueKey, QueuePolicy};
use petrel_smtp_server::{PolicyError, SessionPolicy};
use std::path::PathBuf;
use std::sync::Arc;

const PRELUDE: &str = r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/tmp/petrel-never-opened' }
"#;

fn write_policy(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("init.lua");
    std::fs::write(&path, body).unwrap();
    path
}

/// Load `init` lines (after a prelude of 3 lines) and return the errors.
fn load_errors(init_lines: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, &format!("{PRELUDE}{init_lines}\nend)\n"));
    match PolicyEngine::load(&path, "host.test") {
        Ok(_) => panic!("policy loaded:\n{init_lines}"),
        Err(e) => e.to_string(),
    }
}

fn assert_points_at(errors: &str, line: u32, needle: &str) {
    let location = format!("init.lua:{line}:");
    assert!(errors.contains(&location), "expected {location} in {errors}");
    assert!(errors.contains(needle), "expected {needle:?} in {errors}");
}

#[test]
fn every_registry_error_names_file_and_line() {
    let e = load_errors("  kumo.define_egress_pool { name = 'p', entries = { { name = 'ghost' } } }");
    assert_points_at(&e, 4, "unknown source \"ghost\"");
    let e = load_errors("  kumo.define_egress_source { name = 'a' }\n  kumo.define_egress_source { name = 'a' }");
    assert_points_at(&e, 5, "defined twice (first at");
    let e = load_errors("  kumo.define_egress_source { name = 'has space' }");
    assert_points_at(&e, 4, "invalid source name");
    let e = load_errors("  kumo.define_egress_source { name = 'a:b' }");
    assert_points_at(&e, 4, "invalid source name");
    let e = load_errors("  kumo.define_egress_source { name = 'a', source_address = '10.0.0.999' }");
    assert_points_at(&e, 4, "invalid source_address");
    let e = load_errors(
        "  kumo.define_egress_source { name = 'a' }\n  kumo.define_egress_pool { name = 'p', entries = { { name = 'a', weight = -1 } } }",
    );
    assert_points_at(&e, 5, "negative weight");
    let e = load_errors(
        "  kumo.define_egress_source { name = 'a' }\n  kumo.define_egress_pool { name = 'p', entries = { { name = 'a', weight = 0 } } }",
    );
    assert_points_at(&e, 5, "no usable entry");
    let e = load_errors("  kumo.define_egress_pool { name = 'p', entries = {} }");
    assert_points_at(&e, 4, "no usable entry");
    let e = load_errors("  kumo.define_egress_source { name = 'a', ehlo = 'typo' }");
    assert_points_at(&e, 4, "unknown field `ehlo`");
    let e = load_errors(
        "  kumo.define_egress_source { name = 'a' }\n  kumo.define_egress_pool { name = 'p', entries = { { name = 'a' } }, overflow = 'overflowing' }",
    );
    assert_points_at(&e, 5, "overflow: \"overflowing\" is not 'wait' or 'spill'");
}

#[test]
fn syntax_and_runtime_errors_name_file_and_line() {
    let e = load_errors("  local x = = 1");
    assert_points_at(&e, 4, "unexpected symbol");
    let e = load_errors("  error('boom')");
    assert_points_at(&e, 4, "boom");
    let e = load_errors("  local t = nil\n  t.field = 1");
    assert_points_at(&e, 5, "attempt to index");
}

#[test]
fn definitions_outside_init_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(&dir, "local kumo = require 'kumo'\nkumo.define_egress_source { name = 'a' }\n");
    let e = PolicyEngine::load(&path, "h").err().unwrap().to_string();
    assert_points_at(&e, 2, "may only be called from the init event");
}

const GOOD: &str = r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/tmp/petrel-never-opened' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx.test', relay_hosts = { '127.0.0.1', '10.0.0.0/8' }, listen_backlog = 512 }
  kumo.define_egress_source { name = 'a1', source_address = '127.0.0.2', ehlo_domain = 'a1.test' }
  kumo.define_egress_source { name = 'b1', source_address = '::1', remote_port = 2526 }
  kumo.define_egress_pool { name = 'customer-a', entries = { { name = 'a1' } } }
  kumo.define_egress_pool { name = 'shared', entries = { { name = 'a1', weight = 1 }, { name = 'b1', weight = 3 } }, overflow = 'spill' }
end)

kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local domain = msg:sender().domain
  if domain == 'reject.example' then
    kumo.reject(550, '5.7.1 not from you')
  elseif domain == 'broken.example' then
    local t = nil
    return t.boom
  end
  msg:set_meta('egress_pool', 'customer-' .. msg:sender().user)
  msg:set_meta('tenant', msg:get_first_named_header_value('X-Tenant'))
  msg:prepend_header('X-Seen-By', conn_meta:get_meta('hostname'))
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    egress_pool = tenant,
    retry_interval = '5 minutes',
    max_age = 3600,
    protocol = { smtp = { mx_list = { '127.0.0.1:2526' } } },
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, source, site)
  return kumo.make_egress_path { connection_limit = 2, max_ready = 64, ehlo_domain = source .. '.path.test' }
end)
"#;

fn message(sender: &str) -> Message {
    Message::new(
        EnvelopeAddress::parse(sender).unwrap(),
        EnvelopeAddress::parse("r@dest.example").unwrap(),
        Arc::from(&b"X-Tenant: acme\r\nSubject: hi\r\n\r\nbody\r\n"[..]),
    )
}

#[tokio::test]
async fn a_good_policy_builds_its_registry_and_answers_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::load(&write_policy(&dir, GOOD), "host.test").unwrap();
    let generation = engine.current();
    let config = &generation.config;
    assert_eq!(config.listeners.len(), 1);
    assert!(config.listeners[0].may_relay("10.9.9.9".parse().unwrap()));
    assert_eq!(config.listeners[0].listen_backlog, 512);
    let registry = engine.registry();
    assert_eq!(registry.pool("shared").unwrap().total_weight(), 4);
    assert_eq!(registry.pool("shared").unwrap().overflow, petrel_egress::Overflow::Spill);
    assert_eq!(registry.pool("customer-a").unwrap().overflow, petrel_egress::Overflow::Wait, "waiting is the default");
    assert_eq!(registry.source("b1").unwrap().remote_port, Some(2526));
    assert!(registry.pool("default").is_some(), "built-in default pool");

    let mut m = message("a@good.example");
    engine.message_received(&mut m, &conn()).await.unwrap();
    assert_eq!(m.meta_str("egress_pool"), Some("customer-a"));
    assert_eq!(m.meta_str("tenant"), Some("acme"));
    assert!(m.data.as_ref().unwrap().starts_with(b"X-Seen-By: mx.test\r\nX-Tenant: acme"));

    let mut rejected = message("x@reject.example");
    match engine.message_received(&mut rejected, &conn()).await {
        Err(PolicyError::Reject { code, text }) => assert_eq!((code, text.as_str()), (550, "5.7.1 not from you")),
        other => panic!("{other:?}"),
    }
    let mut broken = message("x@broken.example");
    match engine.message_received(&mut broken, &conn()).await {
        Err(PolicyError::Failed(e)) => assert!(e.contains("init.lua:17:"), "{e}"),
        other => panic!("{other:?}"),
    }

    let key = QueueKey {
        domain: "dest.example".into(),
        tenant: Some("customer-a".into()),
        campaign: None,
        routing_domain: None,
    };
    let qc = engine.queue_config(&key).await.unwrap();
    assert_eq!(qc.egress_pool.as_deref(), Some("customer-a"));
    assert_eq!(qc.retry_interval.as_secs(), 300);
    assert_eq!(qc.max_age.as_secs(), 3600);
    assert_eq!(qc.protocol, DeliveryProtocol::Smtp { mx_list: Some(vec!["127.0.0.1:2526".into()]) });

    let path = engine.egress_path_config("dest.example", "a1", "site").await.unwrap();
    assert_eq!((path.connection_limit, path.ehlo_domain.as_deref()), (2, Some("a1.path.test")));
    assert_eq!(path.max_ready, 64);
}

#[tokio::test]
async fn concurrent_events_each_see_their_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(PolicyEngine::load(&write_policy(&dir, GOOD), "host.test").unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut m = message(&format!("u{i}@good.example"));
                engine.message_received(&mut m, &conn()).await.unwrap();
                m.meta_str("egress_pool").unwrap().to_string()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), format!("customer-u{i}"));
    }
}

#[test]
fn an_http_listener_off_loopback_needs_authentication() {
    let e = load_errors("  kumo.start_http_listener { listen = '0.0.0.0:8000' }");
    assert_points_at(&e, 4, "reachable from other hosts");
    // With an auth event the same listener is accepted.
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{PRELUDE}  kumo.start_http_listener {{ listen = '0.0.0.0:8000' }}\nend)\nkumo.on('http_server_validate_auth_basic', function(u, p) return false end)\n"
    );
    let engine = PolicyEngine::load(&write_policy(&dir, &body), "h").unwrap();
    assert_eq!(engine.current().config.http_listeners.len(), 1);
    // Loopback needs none.
    let local = format!("{PRELUDE}  kumo.start_http_listener {{ listen = '127.0.0.1:8000' }}\nend)\n");
    assert!(PolicyEngine::load(&write_policy(&dir, &local), "h").is_ok());
}

const RUNAWAY: &str = r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/tmp/petrel-never-opened' }
end)
kumo.on('smtp_server_message_received', function(msg)
  if msg:sender().domain == 'loop.example' then
    while true do end
  end
  local deadline = os.clock() + 0.002
  while os.clock() < deadline do end
end)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_handler_is_stopped_and_its_state_reused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(PolicyEngine::load(&write_policy(&dir, RUNAWAY), "h").unwrap());
    engine.set_event_time_limit(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    let mut looping = message("x@loop.example");
    match engine.message_received(&mut looping, &conn()).await {
        Err(PolicyError::Failed(e)) => assert!(e.contains("time limit"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The stopped state goes back to the pool and serves the next calls:
    // a runaway handler costs one call, not a Lua state each time.
    for i in 0..5 {
        engine.message_received(&mut message(&format!("u{i}@ok.example")), &conn()).await.unwrap();
        let mut again = message("y@loop.example");
        assert!(engine.message_received(&mut again, &conn()).await.is_err());
    }
    assert_eq!(engine.current().states_created(), 1, "one state served every call");
}

/// KumoMTA's composition rules for `kumo.on`: `get_queue_config` handlers
/// run in order until one returns a config (so helper modules can each add
/// theirs); for other events the most recent registration is used.
#[tokio::test]
async fn several_handlers_compose_as_in_kumomta() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"{PRELUDE}end)
kumo.on('get_queue_config', function(domain)
  if domain == 'first.example' then
    return kumo.make_queue_config {{ egress_pool = 'from-first' }}
  end
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ egress_pool = 'from-second:' .. domain }}
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen_by', 'earlier') end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen_by', 'later') end)
"#
    );
    let engine = PolicyEngine::load(&write_policy(&dir, &body), "h").unwrap();
    let key = |domain: &str| QueueKey { domain: domain.into(), tenant: None, campaign: None, routing_domain: None };
    let first = engine.queue_config(&key("first.example")).await.unwrap();
    assert_eq!(
        first.egress_pool.as_deref(),
        Some("from-first"),
        "the first handler answered; the second was not asked"
    );
    let other = engine.queue_config(&key("other.example")).await.unwrap();
    assert_eq!(other.egress_pool.as_deref(), Some("from-second:other.example"), "nil from the first asks the next");
    let mut m = message("a@good.example");
    engine.message_received(&mut m, &conn()).await.unwrap();
    assert_eq!(m.meta_str("seen_by"), Some("later"));
}
