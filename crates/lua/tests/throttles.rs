//! `kumo.configure_redis_throttles` and `kumo.make_throttle`: what init
//! accepts and refuses, and throttles counting per name, locally and
//! across two engines sharing one real redis-server.

use petrel_lua::PolicyEngine;
use petrel_queue::{QueueKey, QueuePolicy};
use petrel_testkit::RedisServer;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn policy(dir: &tempfile::TempDir, init: &str, events: &str) -> PathBuf {
    let path = dir.path().join("init.lua");
    let text = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }}\n{init}\nend)\n{events}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn load_error(init: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    PolicyEngine::load(&policy(&dir, init, ""), "h").err().expect("refused").to_string()
}

#[test]
fn configure_redis_throttles_takes_redis_open_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let init = "  kumo.configure_redis_throttles { node = { 'redis://10.0.0.1:6379', 'redis://10.0.0.2:6379' }, \
                connect_timeout = '500ms', response_timeout = 2, node_count = 3, pool_size = 20 }";
    let engine = PolicyEngine::load(&policy(&dir, init, ""), "h").unwrap();
    let redis = engine.current().config.redis_throttles.clone().expect("recorded");
    assert_eq!(redis.config.nodes.len(), 2);
    assert_eq!(redis.config.node_count, 3);
    assert_eq!(redis.config.connect_timeout, Duration::from_millis(500));
    assert_eq!(redis.config.response_timeout, Duration::from_secs(2));
    assert_eq!(redis.notes.len(), 1, "pool_size has no effect and says so: {:?}", redis.notes);

    let err = load_error("  kumo.configure_redis_throttles { node = 'redis://x', read_from_replicas = true }");
    assert!(err.contains("init.lua:4") && err.contains("read_from_replicas"), "{err}");
    let err = load_error("  kumo.configure_redis_throttles { node = 'http://not-redis' }");
    assert!(err.contains("node \"http://not-redis\""), "{err}");
    let err = load_error("  kumo.configure_redis_throttles { nodes = 'redis://x' }");
    assert!(err.contains("nodes"), "{err}");
    let err = load_error("  kumo.configure_redis_throttles { node = 'redis://x', node_count = 0 }");
    assert!(err.contains("node_count"), "{err}");
}

fn key(domain: &str) -> QueueKey {
    QueueKey { domain: domain.into(), tenant: None, campaign: None, routing_domain: None }
}

/// A policy whose queue config reports what its throttles said, as the pool.
const EVENTS: &str = r#"
kumo.on('get_queue_config', function(domain)
  if domain == 'check.test' then
    local r = kumo.make_throttle('per-domain-' .. domain, '2/minute'):throttle()
    return kumo.make_queue_config { egress_pool = string.format('%s:%d:%d:%s', tostring(r.throttled),
      r.remaining, r.limit, tostring(r.retry_after and math.floor(r.retry_after) or nil)) }
  end
  local slept = kumo.make_throttle('paced', '10/s,max_burst=1'):sleep_if_throttled()
  return kumo.make_queue_config { egress_pool = tostring(slept) }
end)
"#;

async fn pool(engine: &PolicyEngine, domain: &str) -> String {
    engine.queue_config(&key(domain)).await.unwrap().egress_pool.unwrap()
}

#[tokio::test]
async fn make_throttle_counts_per_name_and_yields_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::load(&policy(&dir, "", EVENTS), "h").unwrap();
    assert_eq!(pool(&engine, "check.test").await, "false:1:2:nil");
    assert_eq!(pool(&engine, "check.test").await, "false:0:2:nil");
    assert_eq!(pool(&engine, "check.test").await, "true:0:2:29", "the third waits half a minute");
    assert_eq!(pool(&engine, "a.test").await, "false");
    let start = Instant::now();
    assert_eq!(pool(&engine, "a.test").await, "true", "the second of 10/s waits its turn");
    assert!(start.elapsed() >= Duration::from_millis(80), "{:?}", start.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let bad = "kumo.on('get_queue_config', function() kumo.make_throttle('x', 'often') end)";
    let engine = PolicyEngine::load(&policy(&dir, "", bad), "h").unwrap();
    let err = engine.queue_config(&key("a.test")).await.unwrap_err().to_string();
    assert!(err.contains("init.lua:6") && err.contains("throttle \"often\""), "{err}");
}

#[tokio::test]
async fn two_engines_on_one_redis_share_a_throttle() {
    let redis = RedisServer::start();
    let init = format!("  kumo.configure_redis_throttles {{ node = '{}', node_count = 2 }}", redis.url());
    let engines: Vec<PolicyEngine> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let engine = PolicyEngine::load(&policy(&dir, &init, EVENTS), "h").unwrap();
            let config = engine.current().config.redis_throttles.clone().unwrap().config;
            engine.limiter().configure(Some(&config)).unwrap();
            engine
        })
        .collect();
    assert_eq!(pool(&engines[0], "check.test").await, "false:1:2:nil");
    assert_eq!(pool(&engines[1], "check.test").await, "false:0:2:nil");
    assert!(pool(&engines[0], "check.test").await.starts_with("true:0:2:"), "the other node's use counted");
    assert_eq!(engines[0].limiter().mode(), petrel_throttle::Mode::Shared);
}
