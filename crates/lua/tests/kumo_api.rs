//! The KumoMTA API surface beyond definitions: memoize, late-bound sources
//! and pools, several handlers for one event, validate_config, DNS lookups,
//! the message's header methods, and handlers registered while the policy
//! runs, the arguments a reception handler sees, each through the engine's
//! policy traits as the daemon calls them.

mod common;

use common::conn;
use petrel_delivery::EgressPolicy;
use petrel_lua::PolicyEngine;
use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{QueueKey, QueuePolicy};
use petrel_smtp_server::{PolicyError, SessionPolicy};
use std::path::PathBuf;
use std::sync::Arc;

fn policy(dir: &tempfile::TempDir, top: &str, events: &str) -> PathBuf {
    let path = dir.path().join("init.lua");
    let text = format!(
        "local kumo = require 'kumo'\n{top}\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }}\nend)\n{events}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn key(domain: &str) -> QueueKey {
    QueueKey { domain: domain.into(), tenant: None, campaign: None, routing_domain: None }
}

async fn pool_of(engine: &PolicyEngine, domain: &str) -> String {
    engine.queue_config(&key(domain)).await.unwrap().egress_pool.unwrap()
}

#[tokio::test]
async fn memoize_caches_per_argument_for_the_generation_and_a_reload_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"local counter = 0
local function expensive(domain)
  counter = counter + 1
  return { pool = domain .. '-' .. tostring(math.random(1, 1000000000)) }
end
local cached = kumo.memoize(expensive, { name = 'pools', ttl = '5 minutes', capacity = 10 })
local uncached = kumo.memoize(expensive, { name = 'never', ttl = 0, capacity = 10 })
kumo.on('get_queue_config', function(domain)
  local f = domain:find('^fresh') and uncached or cached
  return kumo.make_queue_config { egress_pool = f(domain).pool }
end)"#;
    let engine = Arc::new(PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap());
    let first = pool_of(&engine, "a.test").await;
    assert!(first.starts_with("a.test-"));
    assert_eq!(pool_of(&engine, "a.test").await, first, "same arguments: the cached value");
    assert_ne!(pool_of(&engine, "b.test").await, first, "other arguments: their own value");
    // Concurrent callers run in several Lua states; they share the cache.
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { pool_of(&engine, "a.test").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), first);
    }
    assert_ne!(pool_of(&engine, "fresh.test").await, pool_of(&engine, "fresh.test").await, "a zero ttl keeps nothing");
    let next = engine.prepare("host.test").unwrap();
    engine.commit(next);
    assert_ne!(pool_of(&engine, "a.test").await, first, "a reload empties the caches");
}

#[tokio::test]
async fn late_bound_pools_and_sources_come_from_their_events_and_are_kept_for_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"local asked = 0
kumo.on('get_egress_pool', function(name)
  asked = asked + 1
  if name == 'wrong' then
    return kumo.make_egress_pool { name = 'other', entries = { { name = 'ip-1' } } }
  end
  if name == 'late' then
    return { name = 'late', entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' } } }
  end
end)
kumo.on('get_egress_source', function(name)
  if name == 'ip-1' then
    return kumo.make_egress_source { name = 'ip-1', source_address = '127.0.0.2', ehlo_domain = 'one.test', ttl = '1 hour' }
  end
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { egress_pool = tostring(asked) }
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    let pool = engine.egress_pool("late").await.unwrap().expect("defined by the event");
    assert_eq!(
        pool.entries.iter().map(|e| (e.source.as_str(), e.weight)).collect::<Vec<_>>(),
        [("ip-1", 3), ("ip-2", 1)]
    );
    engine.egress_pool("late").await.unwrap();
    assert_eq!(pool_of(&engine, "x.test").await, "1", "the second lookup is answered from the cache");
    assert!(engine.egress_pool("nothing").await.unwrap().is_none());
    let wrong = engine.egress_pool("wrong").await.unwrap_err().to_string();
    assert!(wrong.contains("returned a definition named \"other\""), "{wrong}");
    let source = engine.egress_source("ip-1").await.unwrap().unwrap();
    assert_eq!(source.source_address, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(source.ehlo_domain.as_deref(), Some("one.test"));
    assert!(engine.egress_source("ip-2").await.unwrap().is_none());
}

#[test]
fn documented_options_petrel_lacks_are_named_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    let top = "local s = kumo.make_egress_source { name = 'p', ha_proxy_server = '10.0.0.1:5000', ha_proxy_source_address = '10.0.0.2' }";
    let err = PolicyEngine::load(&policy(&dir, top, ""), "host.test").err().unwrap().to_string();
    assert!(err.contains("init.lua:2") && err.contains("`ha_proxy_server`"), "{err}");
    assert!(err.contains("not supported by Petrel"), "{err}");
    let top = "local s = kumo.make_egress_source { name = 'p', bogus = 1 }";
    let err = PolicyEngine::load(&policy(&dir, top, ""), "host.test").err().unwrap().to_string();
    assert!(err.contains("unknown field `bogus`") && !err.contains("not supported by Petrel"), "{err}");
    let init = "kumo.start_esmtp_listener { listen = '127.0.0.1:0', deferred_queue = true }";
    let err = PolicyEngine::load(&policy(&dir, "", &format!("kumo.on('pre_init', function() {init} end)")), "h")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`deferred_queue`") && err.contains("not supported by Petrel"), "{err}");
}

#[tokio::test]
async fn pre_init_and_validate_config_run_every_handler_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"local order = {}
kumo.on('pre_init', function() table.insert(order, 'first') end)
kumo.on('pre_init', function() table.insert(order, 'second') end)
kumo.on('validate_config', function() kumo.log_warn('helper one checked') end)
kumo.on('validate_config', function()
  kumo.log_error('pool.p names source ghost')
  kumo.validation_failed()
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { egress_pool = table.concat(order, ',') }
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    // Only the state that ran init ran pre_init; queue_config uses it.
    assert_eq!(pool_of(&engine, "x.test").await, "first,second");
    let errors = engine.validate_config().await;
    assert_eq!(errors, ["helper one checked", "pool.p names source ghost"]);

    let quiet = policy(&dir, "", "kumo.on('validate_config', function() kumo.log_warn('fine') end)");
    let engine = PolicyEngine::load(&quiet, "host.test").unwrap();
    assert!(engine.validate_config().await.is_empty(), "warnings without validation_failed pass");
}

#[tokio::test]
async fn dns_lookups_use_the_engines_resolver() {
    let zone = petrel_testkit::Zone::new()
        .mx("dest.test", 20, "mx2.dest.test")
        .mx("dest.test", 10, "mx1.dest.test")
        .addr("mx1.dest.test", "127.0.0.9".parse().unwrap())
        .txt("dest.test", "v=spf1 -all")
        .addr("9.0.0.127.rbl.test", "127.0.0.2".parse().unwrap())
        .txt("9.0.0.127.rbl.test", "listed for testing");
    let dns = petrel_testkit::DnsServer::start(zone).await;
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('get_queue_config', function(domain)
  local mx = kumo.dns.lookup_mx(domain)
  local addr = kumo.dns.lookup_addr(mx.hosts[1]:sub(1, -2))
  local txt = kumo.dns.lookup_txt(domain)
  local literal = kumo.dns.lookup_mx('[127.0.0.3]')
  local listed, reason = kumo.dns.rbl_lookup('127.0.0.9', 'rbl.test')
  local clean = kumo.dns.rbl_lookup('127.0.0.8:25', 'rbl.test')
  assert(listed == '127.0.0.2' and reason == 'listed for testing' and clean == nil)
  assert(kumo.dns.reverse_ip '127.0.0.1' == '1.0.0.127')
  assert(kumo.dns.ptr_host '::1' == '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa')
  return kumo.make_queue_config {
    egress_pool = table.concat(mx.hosts, ',') .. '|' .. mx.by_pref[20][1] .. '|' .. addr[1] .. '|' .. txt[1]
      .. '|' .. tostring(mx.is_mx) .. '|' .. tostring(literal.is_domain_literal) .. '|' .. literal.hosts[1],
  }
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    let resolver = petrel_dns::HickoryResolver::with_name_servers(&[dns.addr()]).unwrap();
    engine.set_resolver(Arc::new(resolver));
    assert_eq!(
        pool_of(&engine, "dest.test").await,
        "mx1.dest.test.,mx2.dest.test.|mx2.dest.test.|127.0.0.9|v=spf1 -all|true|true|127.0.0.3."
    );
    let missing = engine.queue_config(&key("nxdomain.test")).await.unwrap_err().to_string();
    assert!(missing.contains("does not exist"), "{missing}");
}

fn message(body: &str) -> Message {
    let sender = EnvelopeAddress::parse("bounce@sender.test").unwrap();
    let recipient = EnvelopeAddress::parse("user@dest.test").unwrap();
    Message::new(sender, recipient, Arc::from(body.as_bytes()))
}

#[tokio::test]
async fn header_methods_read_addresses_import_x_headers_and_check_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', 'MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
  local from = msg:from_header()
  msg:set_meta('from_domain', from.domain)
  msg:set_meta('from_name', from.name)
  msg:set_meta('to_count', #msg:to_header().list)
  msg:import_x_headers()
  msg:remove_x_headers { 'x-mailer' }
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    let mut msg = message(
        "From: \"News Desk\" <news@brand.test>\r\nTo: a@x.test, b@y.test\r\nX-Campaign-ID: 12345\r\nX-Mailer: foobar\r\nSubject: hi\r\n\r\nbody\r\n",
    );
    engine.message_received(&mut msg, &conn()).await.unwrap();
    assert_eq!(msg.meta_str("from_domain"), Some("brand.test"));
    assert_eq!(msg.meta_str("from_name"), Some("News Desk"));
    assert_eq!(msg.meta.get("to_count"), Some(&serde_json::json!(2)));
    assert_eq!(msg.meta_str("x_campaign_id"), Some("12345"));
    assert_eq!(msg.meta_str("x_mailer"), Some("foobar"));
    let data = String::from_utf8(msg.data.as_deref().unwrap().to_vec()).unwrap();
    assert!(!data.contains("X-Mailer") && data.contains("X-Campaign-ID"), "{data}");
    assert!(data.contains("\r\nDate: ") && data.contains("\r\nMessage-ID: <"), "missing headers are added: {data}");

    let mut bare_lf = message("From: a@b.test\nSubject: x\n\nbody\n");
    match engine.message_received(&mut bare_lf, &conn()).await {
        Err(PolicyError::Reject { code: 552, text }) => {
            assert_eq!(text, "5.6.0 Message has conformance issues: NON_CANONICAL_LINE_ENDINGS")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn documented_functions_petrel_lacks_say_so_where_the_policy_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let err = PolicyEngine::load(&policy(&dir, "local h = kumo.crypto.aes_encrypt_block('x')", ""), "host.test")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("init.lua:2")
            && err.contains("kumo.crypto.aes_encrypt_block is documented by KumoMTA but not supported by Petrel yet"),
        "{err}"
    );
    let err = PolicyEngine::load(&policy(&dir, "kumo.configure_accounting_db_path '/tmp/x'", ""), "h")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("kumo.configure_accounting_db_path is documented"), "{err}");
    let err =
        PolicyEngine::load(&policy(&dir, "local http = require 'kumo.http'\nhttp.connect_websocket 'ws://x'", ""), "h")
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("kumo.http.connect_websocket is documented"), "{err}");
    // Names KumoMTA does not document are nil, as in any Lua table.
    let ok = policy(&dir, "assert(kumo.no_such_function == nil)\nassert(kumo.string.trim(' a ') == 'a')", "");
    PolicyEngine::load(&ok, "host.test").unwrap();
}

#[tokio::test]
async fn new_lua_states_of_a_generation_read_the_files_it_was_loaded_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pools.json");
    std::fs::write(&data, r#"{ "pool": "from-the-first-read" }"#).unwrap();
    let top = format!("local DATA = kumo.json_load '{}'", data.display());
    let events = r#"kumo.on('get_queue_config', function()
  kumo.sleep(0.05)
  return kumo.make_queue_config { egress_pool = DATA.pool }
end)"#;
    let path = policy(&dir, &top, events);
    let engine = Arc::new(PolicyEngine::load(&path, "host.test").unwrap());
    // Edits that are not reloaded yet, one of them broken.
    std::fs::write(&data, "{ not json").unwrap();
    std::fs::write(&path, "this is not lua").unwrap();
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { pool_of(&engine, "x.test").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "from-the-first-read");
    }
    assert!(engine.current().states_created() > 1, "concurrent events needed more states");
    // The reload is what reads the new files, and refuses them.
    assert!(engine.prepare("host.test").is_err());
}

#[tokio::test]
async fn invoke_functions_return_make_parameters_that_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path { connection_limit = 7, max_message_rate = '50/m', enable_tls = 'Required' }
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = { { name = 'ip-9', weight = 4 } } }
end)
kumo.on('get_queue_config', function(domain)
  local path = kumo.invoke_get_egress_path_config(domain, 'src', 'site')
  -- The parameters are accepted by make_egress_path as they are.
  local again = kumo.make_egress_path(path)
  local pool = kumo.invoke_get_egress_pool('late')
  local base = {
    retry_interval = '5m',
    protocol = { smtp = { mx_list = { 'a.test', { name = 'b.test', addr = '127.0.0.9:26' } } } },
  }
  if domain == 'copy.test' then
    -- The queue config of another domain, adjusted.
    base = kumo.invoke_get_queue_config('base.test')
  end
  base.egress_pool = string.format('%d|%s|%s|%s:%d|%s', path.connection_limit, path.max_message_rate,
    path.enable_tls, pool.entries[1].name, pool.entries[1].weight, tostring(again ~= nil))
  return kumo.make_queue_config(base)
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    let base = engine.queue_config(&key("base.test")).await.unwrap();
    assert_eq!(base.egress_pool.as_deref(), Some("7|50/m|Required|ip-9:4|true"));
    let copy = engine.queue_config(&key("copy.test")).await.unwrap();
    assert_eq!(copy.retry_interval, std::time::Duration::from_secs(300));
    assert_eq!(copy.protocol, base.protocol, "mx_list entries, pinned ones included, round-trip");
}

#[tokio::test]
async fn config_monitor_globs_count_in_the_fingerprint_and_make_message_builds_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/a.toml"), "x = 1").unwrap();
    let glob = format!("{}/conf/*.toml", dir.path().display());
    let events = format!(
        r#"kumo.on('pre_init', function() kumo.set_config_monitor_globs {{ '{glob}' }} end)
kumo.on('get_queue_config', function()
  local m = kumo.make_message('news@brand.test', 'user@dest.test', 'From: <news@brand.test>\r\n\r\nhi\r\n')
  local files = kumo.eval_config_monitor_globs()
  return kumo.make_queue_config {{ egress_pool = m:sender().domain .. '|' .. #files }}
end)"#
    );
    let engine = PolicyEngine::load(&policy(&dir, "", &events), "host.test").unwrap();
    assert_eq!(pool_of(&engine, "x.test").await, "brand.test|1");
    assert!(engine.current().fingerprint.unchanged());
    std::fs::write(dir.path().join("conf/b.toml"), "y = 2").unwrap();
    assert!(!engine.current().fingerprint.unchanged(), "a new matching file is a change");
    let bad = policy(&dir, "", "kumo.on('pre_init', function() kumo.set_config_monitor_globs { '/etc/[oops' } end)");
    let err = PolicyEngine::load(&bad, "h").err().unwrap().to_string();
    assert!(err.contains("init.lua:6") && err.contains("set_config_monitor_globs"), "{err}");
}

#[test]
fn spawn_task_needs_a_handler_and_custom_events_need_a_dot() {
    let dir = tempfile::tempdir().unwrap();
    let err = PolicyEngine::load(
        &policy(&dir, "", "kumo.on('pre_init', function() kumo.spawn_task { event_name = 'my.missing' } end)"),
        "h",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("init.lua:6") && err.contains("no handler for \"my.missing\""), "{err}");
    let err =
        PolicyEngine::load(&policy(&dir, "", "kumo.on('mytask', function() end)"), "h").err().unwrap().to_string();
    assert!(err.contains("unknown event \"mytask\""), "{err}");
    PolicyEngine::load(&policy(&dir, "", "kumo.on('my.task', function() end)"), "h").unwrap();
}

#[tokio::test]
async fn set_diagnostic_log_filter_checks_and_applies_kumomtas_form() {
    let dir = tempfile::tempdir().unwrap();
    let init_call = "kumo.on('pre_init', function() kumo.set_diagnostic_log_filter 'kumod=debug' end)";
    let events =
        format!("{init_call}\nkumo.on('get_queue_config', function() kumo.set_diagnostic_log_filter 'info' end)");
    let engine = PolicyEngine::load(&policy(&dir, "", &events), "host.test").unwrap();
    assert_eq!(engine.current().config.log_filter.as_deref(), Some("petrel=debug"), "kumod is read as petrel");
    let applied = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = applied.clone();
    engine.set_log_filter(petrel_telemetry::LogFilter::from_fn(move |f| {
        seen.lock().unwrap().push(f.to_string());
        Ok(())
    }));
    engine.queue_config(&key("x.test")).await.unwrap();
    assert_eq!(*applied.lock().unwrap(), ["info"]);
    let bad = policy(&dir, "", "kumo.on('pre_init', function() kumo.set_diagnostic_log_filter 'petrel=loud' end)");
    let err = PolicyEngine::load(&bad, "h").err().unwrap().to_string();
    assert!(err.contains("init.lua:6") && err.contains("set_diagnostic_log_filter"), "{err}");
}

#[tokio::test]
async fn dkim_signers_sign_and_are_built_once_per_generation() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("s1.key");
    let out = std::process::Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048").output().unwrap();
    assert!(out.status.success(), "openssl genrsa");
    let ed = dir.path().join("ed.key");
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&ed)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl genpkey");
    let events = format!(
        r#"local ed_data = io.open('{ed}'):read('a')
kumo.on('smtp_server_message_received', function(msg)
  local signer = kumo.dkim.rsa_sha256_signer {{
    domain = msg:from_header().domain, selector = 's1',
    headers = {{ 'From', 'To', 'Subject' }}, key = '{key}', over_sign = true,
  }}
  msg:dkim_sign(signer)
  msg:dkim_sign(kumo.dkim.ed25519_signer {{
    domain = 'esp.test', selector = 'ed', headers = {{ 'From' }}, key = {{ key_data = ed_data }},
  }})
end)"#,
        key = key.display(),
        ed = ed.display()
    );
    let engine = PolicyEngine::load_with(
        &policy(&dir, "", &events),
        "host.test",
        Arc::new(petrel_telemetry::Metrics::new()),
        petrel_lua::LuaSettings { unrestricted: true, ..Default::default() },
    )
    .unwrap();
    let mut msg = message("From: <news@brand.test>\r\nTo: <a@x.test>\r\nSubject: hi\r\n\r\nbody\r\n");
    engine.message_received(&mut msg, &conn()).await.unwrap();
    let data = String::from_utf8(msg.data.as_deref().unwrap().to_vec()).unwrap();
    let signatures: Vec<&str> = data.split("DKIM-Signature:").skip(1).collect();
    assert_eq!(signatures.len(), 2, "{data}");
    assert!(signatures[0].contains("a=ed25519-sha256") && signatures[0].contains("d=esp.test"), "{data}");
    let rsa = signatures[1].replace(['\r', '\n', ' ', '\t'], "");
    assert!(rsa.contains("a=rsa-sha256") && rsa.contains("d=brand.test") && rsa.contains("s=s1"), "{data}");
    // Over-signing names each present header once more than it occurs.
    let h = rsa.split("h=").nth(1).unwrap().split(';').next().unwrap();
    for name in ["From", "To", "Subject"] {
        assert_eq!(h.split(':').filter(|n| *n == name).count(), 2, "{name} signed once, over-signed once: {h}");
    }
    // The signer is kept: with its key file gone, the same parameters
    // still sign (the key was read once, not per message).
    std::fs::remove_file(&key).unwrap();
    let mut again = message("From: <news@brand.test>\r\nTo: <b@x.test>\r\nSubject: hi\r\n\r\nbody\r\n");
    engine.message_received(&mut again, &conn()).await.unwrap();
    let mut other = message("From: <news@other.test>\r\nTo: <b@x.test>\r\nSubject: hi\r\n\r\nbody\r\n");
    match engine.message_received(&mut other, &conn()).await {
        Err(e) => assert!(e.to_string().contains("s1.key"), "other parameters read the (now missing) file: {e}"),
        Ok(()) => panic!("a new signer reads its key"),
    }
}

#[test]
fn dkim_signer_options_petrel_lacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (option, needle) in [
        ("atpsh = 'sha256'", "option `atpsh` is documented by KumoMTA but not supported by Petrel yet"),
        ("colour = 'blue'", "unknown field `colour`"),
    ] {
        let top = format!(
            "kumo.dkim.rsa_sha256_signer {{ domain = 'd.test', selector = 's', headers = {{ 'From' }}, key = {{ key_data = 'x' }}, {option} }}"
        );
        let err = PolicyEngine::load(&policy(&dir, &top, ""), "host.test").err().expect("refused");
        let text = err.to_string();
        assert!(text.contains(needle) && text.contains("init.lua:2"), "{text}");
    }
}

#[tokio::test]
async fn a_handler_registered_while_the_policy_runs_replaces_the_one_a_state_has_cached() {
    let dir = tempfile::tempdir().unwrap();
    // States look each handler up once; `kumo.on` must make them look again.
    let events = r#"kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('handled_by', 'first')
  kumo.on('smtp_server_message_received', function(msg) msg:set_meta('handled_by', 'second') end)
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "mx.test").unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut m = message("Subject: hi\r\n\r\nbody\r\n");
        engine.message_received(&mut m, &conn()).await.unwrap();
        seen.push(m.meta_str("handled_by").unwrap().to_string());
    }
    assert_eq!(seen, ["first", "second", "second"]);
}

/// A reception handler gets the connection meta as its second argument
/// whether it names it or takes `...` (Petrel leaves it out only for a
/// handler that declares one parameter, which could not see it), and meta
/// values keep their Lua types on the way into the message.
#[tokio::test]
async fn reception_handlers_see_the_connection_however_they_declare_it_and_meta_keeps_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let events = r#"kumo.on('smtp_server_message_received', function(...)
  local msg, conn = ...
  msg:set_meta('hostname', conn:get_meta('hostname'))
  msg:set_meta('argc', select('#', ...))
  msg:set_meta('whole', 3)
  msg:set_meta('half', 1.5)
  msg:set_meta('yes', true)
  msg:set_meta('list', { 'a', 'b' })
  msg:set_meta('types', math.type(msg:get_meta('whole')) .. ',' .. math.type(msg:get_meta('half')))
  local sender = msg:sender()
  msg:set_meta('parts', sender.user .. '|' .. sender.domain .. '|' .. sender.email .. '|' .. tostring(sender))
end)"#;
    let engine = PolicyEngine::load(&policy(&dir, "", events), "host.test").unwrap();
    let mut msg = message("Subject: hi\r\n\r\nbody\r\n");
    engine.message_received(&mut msg, &conn()).await.unwrap();
    let meta = |k: &str| msg.meta.get(k).cloned().unwrap_or_default();
    assert_eq!(meta("hostname"), serde_json::json!(conn().hostname));
    assert_eq!(meta("argc"), serde_json::json!(2));
    assert_eq!(
        (meta("whole"), meta("half"), meta("yes")),
        (serde_json::json!(3), serde_json::json!(1.5), serde_json::json!(true))
    );
    assert_eq!(meta("list"), serde_json::json!(["a", "b"]));
    assert_eq!(meta("types"), serde_json::json!("integer,float"));
    let sender = msg.sender.clone();
    assert_eq!(
        meta("parts"),
        serde_json::json!(format!("{}|{}|{}|{}", sender.user(), sender.domain(), sender.email(), sender.email()))
    );
}
