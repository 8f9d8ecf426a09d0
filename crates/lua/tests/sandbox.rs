//! The policy runtime fails closed: a sandboxed standard library, a memory
//! limit per state, and decision events that accept only the types they
//! document.

mod common;

use common::conn;
use petrel_lua::{LuaSettings, PolicyEngine};
use petrel_message::EnvelopeAddress;
use petrel_smtp_server::{PolicyError, SessionPolicy};
use std::path::PathBuf;
use std::sync::Arc;

fn policy(dir: &tempfile::TempDir, events: &str) -> PathBuf {
    let path = dir.path().join("init.lua");
    let text = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }}\nend)\n{events}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn engine(path: &std::path::Path, settings: LuaSettings) -> PolicyEngine {
    PolicyEngine::load_with(path, "h", Arc::new(petrel_telemetry::Metrics::new()), settings).unwrap()
}

const PROBE: &str = r#"
kumo.on('smtp_server_ehlo', function(domain)
  local present = {}
  for _, name in ipairs { 'io', 'load', 'loadfile', 'dofile' } do
    if _G[name] ~= nil then table.insert(present, name) end
  end
  for _, name in ipairs { 'execute', 'exit', 'remove', 'rename' } do
    if os[name] ~= nil then table.insert(present, 'os.' .. name) end
  end
  if package.loadlib ~= nil then table.insert(present, 'package.loadlib') end
  if string.dump ~= nil then table.insert(present, 'string.dump') end
  if #present > 0 then kumo.reject(550, table.concat(present, ',')) end
  if domain:sub(1, 4) == 'run:' then os.execute('touch ' .. domain:sub(5)) end
end)
"#;

#[tokio::test]
async fn the_default_library_cannot_run_programs_or_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let sandboxed = engine(&policy(&dir, PROBE), LuaSettings::default());
    assert!(sandboxed.ehlo("client.test", &conn()).await.is_ok(), "nothing dangerous is there");
    let marker = dir.path().join("ran");
    match sandboxed.ehlo(&format!("run:{}", marker.display()), &conn()).await {
        Err(PolicyError::Failed(e)) => assert!(e.contains("init.lua:") && e.contains("execute"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!marker.exists(), "no program ran");

    let open = engine(&policy(&dir, PROBE), LuaSettings { unrestricted: true, ..LuaSettings::default() });
    match open.ehlo("client.test", &conn()).await {
        Err(PolicyError::Reject { text, .. }) => {
            for name in ["io", "load", "os.execute", "package.loadlib"] {
                assert!(text.split(',').any(|n| n == name), "{name} missing from {text}");
            }
        }
        other => panic!("the opt-in gives the whole library: {other:?}"),
    }
}

#[tokio::test]
async fn lua_modules_next_to_the_policy_still_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("helper.lua"), "return { answer = function() return 42 end }").unwrap();
    let events = r#"local helper = require 'helper'
kumo.on('smtp_server_ehlo', function() if helper.answer() ~= 42 then error('no') end end)"#;
    let engine = engine(&policy(&dir, events), LuaSettings::default());
    engine.ehlo("client.test", &conn()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_memory_limit_fails_and_its_state_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('smtp_server_rcpt_to', function(rcpt)
  if rcpt.domain == 'big.example' then local s = string.rep('x', 2e9) end
end)"#;
    let settings = LuaSettings { memory_limit: 64 << 20, ..LuaSettings::default() };
    let engine = engine(&policy(&dir, events), settings);
    let big = EnvelopeAddress::parse("r@big.example").unwrap();
    let started = std::time::Instant::now();
    match engine.rcpt_to(&big, &conn()).await {
        Err(PolicyError::Failed(e)) => assert!(e.contains("memory"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "stopped at the limit, not after building 2 GB");
    let small = EnvelopeAddress::parse("r@small.example").unwrap();
    engine.rcpt_to(&small, &conn()).await.unwrap();
    assert_eq!(engine.current().states_created(), 2, "the state that ran out was discarded");
}

#[tokio::test]
async fn only_true_authenticates_and_stray_results_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  local answers = { one = 1, text = 'true', table = {}, yes = true, no = false }
  if authc == 'none' then return nil end
  return answers[authc]
end)
kumo.on('smtp_server_rcpt_to', function(rcpt)
  local answers = { number = 1, text = 'ok', table = {}, yes = true }
  return answers[rcpt.user]
end)"#;
    let engine = engine(&policy(&dir, events), LuaSettings::default());
    assert!(engine.auth_plain("", "yes", "pw", &conn()).await.unwrap());
    assert!(!engine.auth_plain("", "no", "pw", &conn()).await.unwrap());
    for stray in ["one", "text", "table", "none"] {
        match engine.auth_plain("", stray, "pw", &conn()).await {
            Err(PolicyError::Failed(e)) => assert!(e.contains("smtp_server_auth_plain must return"), "{stray}: {e}"),
            other => panic!("{stray}: {other:?}"),
        }
    }
    for stray in ["number", "text", "table", "yes"] {
        let rcpt = EnvelopeAddress::parse(&format!("{stray}@d.example")).unwrap();
        match engine.rcpt_to(&rcpt, &conn()).await {
            Err(PolicyError::Failed(e)) => {
                assert!(e.contains("smtp_server_rcpt_to must return nothing"), "{stray}: {e}")
            }
            other => panic!("{stray}: {other:?}"),
        }
    }
    engine.rcpt_to(&EnvelopeAddress::parse("fine@d.example").unwrap(), &conn()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_in_kumo_sleep_counts_against_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('smtp_server_mail_from', function(sender)
  kumo.sleep(tonumber(sender.user:sub(2)) / 1000)
end)"#;
    let settings = LuaSettings { event_time_limit: std::time::Duration::from_millis(300), ..LuaSettings::default() };
    let engine = engine(&policy(&dir, events), settings);
    let started = std::time::Instant::now();
    engine.mail_from(&EnvelopeAddress::parse("s50@a.example").unwrap(), &conn()).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(50), "it slept");
    let started = std::time::Instant::now();
    match engine.mail_from(&EnvelopeAddress::parse("s5000@a.example").unwrap(), &conn()).await {
        Err(PolicyError::Failed(e)) => assert!(e.contains("time limit"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "stopped at the limit: {:?}", started.elapsed());
    // The state whose sleep was cut short serves the next call.
    engine.mail_from(&EnvelopeAddress::parse("s1@a.example").unwrap(), &conn()).await.unwrap();
}
