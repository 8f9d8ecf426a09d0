//! The operator console in a real headless Chromium: what a person sees
//! after mail went through, a suspension made by clicking, the pool split
//! against its weights, and a delivered message's records. Screenshots of
//! each page go to the test's temp dir (and to `PETREL_CONSOLE_SHOTS`, when
//! set, which is how `docs/console/` is made).

use petrel_e2e::browser::Browser;
use petrel_e2e::{TestDaemon, Workspace, eventually, inject, smart_host_events};
use petrel_telemetry::RecordType;
use petrel_testkit::Sink;
use std::path::PathBuf;
use std::time::Duration;

const INIT: &str = "  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2', ehlo_domain = 'two.mta.test' }
  kumo.define_egress_source { name = 'ip-3', source_address = '127.0.0.3', ehlo_domain = 'three.mta.test' }
  kumo.define_egress_pool { name = 'pool', entries = { { name = 'ip-2', weight = 1 }, { name = 'ip-3', weight = 2 } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_happened_and_suspends_on_a_click() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = format!(
        "{}\nkumo.on('get_egress_path_config', function() return kumo.make_egress_path {{ prohibited_hosts = {{}} }} end)",
        smart_host_events(sink.addr(), "egress_pool = 'pool',")
    );
    let daemon = TestDaemon::start(&ws.policy(INIT, &events)).unwrap();
    let accepted = inject(daemon.smtp[0], 30, 3, |i| ("s@a.example".into(), format!("r{i}@dest.example"))).await;
    assert_eq!(accepted, 30);
    assert!(eventually(Duration::from_secs(15), || sink.received_count() == 30).await);
    let from = |ip: &str| sink.received().iter().filter(|m| m.peer.ip().to_string() == ip).count();
    let (two, three) = (from("127.0.0.2"), from("127.0.0.3"));
    assert_eq!((two, three), (10, 20), "the sink's own split");
    let delivered = || ws.records().into_iter().find(|r| r.kind == RecordType::Delivery).map(|r| r.id);
    assert!(eventually(Duration::from_secs(5), || delivered().is_some()).await, "a delivery record");
    let delivered_id = delivered().unwrap();

    let url = format!("http://{}/", daemon.http[0]);
    let shots: Vec<PathBuf> = std::iter::once(ws.logs().parent().unwrap().join("shots"))
        .chain(std::env::var_os("PETREL_CONSOLE_SHOTS").map(PathBuf::from))
        .collect();
    for dir in &shots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let shot = move |browser: &Browser, name: &str| {
        for dir in &shots {
            browser.screenshot(&dir.join(format!("{name}.png")));
        }
    };
    let saved = ws.logs().parent().unwrap().join("shots");
    tokio::task::spawn_blocking(move || {
        let browser = Browser::start();
        browser.open(&url);
        browser.wait_for("body[data-loaded='true']");
        // Overview: the counts match the sink.
        browser.wait_text("#total-delivered", |t| t == "30");
        assert_eq!(browser.text("#total-received"), "30");
        assert_eq!(browser.text("#total-bounced"), "0");
        let daemon_info = browser.text("#daemon");
        assert!(daemon_info.contains("ESMTP 127.0.0.1:") && daemon_info.contains("accepting mail"), "{daemon_info}");
        shot(&browser, "overview");
        // Reload from the page: the report appears.
        browser.click("#reload");
        let report = browser.wait_text("#reload-report", |t| t.contains("generation"));
        assert!(report.contains("\"success\": true") && report.contains("\"unchanged\": true"), "{report}");

        // Sources: each source's deliveries of the last hour, as the sink saw them.
        browser.click("#nav-sources");
        let row = browser.wait_text("#sources tr[data-source='ip-2']", |t| t.contains("127.0.0.2"));
        assert!(row.contains("two.mta.test") && row.contains("pool (1)") && row.contains(" 10 "), "{row}");
        let row = browser.text("#sources tr[data-source='ip-3']");
        assert!(row.contains("pool (2)") && row.contains(" 20 "), "{row}");
        shot(&browser, "sources");

        // Pools: the last picks split as the weights say.
        browser.click("#nav-pools");
        let picks = browser.wait_text("[data-pool='pool'] tr[data-source='ip-2'] td.picks", |t| t.contains('%'));
        assert!(picks.contains("33.3% (10)"), "{picks}");
        let picks = browser.text("[data-pool='pool'] tr[data-source='ip-3'] td.picks");
        assert!(picks.contains("66.7% (20)"), "{picks}");
        shot(&browser, "pools");

        // A click suspends a source, with the reason typed.
        browser.click("#nav-sources");
        browser.type_into("#source-reason", "blocked at example provider");
        browser.click("button.suspend-source[data-source='ip-2']");
        let row = browser.wait_text("#sources tr[data-source='ip-2']", |t| t.contains("suspended"));
        assert!(row.contains("suspended: blocked at example provider"), "{row}");
        shot(&browser, "sources-suspended");

        // Queues: the suspension is listed with its reason and creator.
        browser.click("#nav-queues");
        let list = browser.wait_text("#suspensions", |t| t.contains("ip-2"));
        assert!(list.contains("blocked at example provider") && list.contains("source"), "{list}");
        shot(&browser, "queues");

        // Message: a delivered message's records, by id.
        browser.click("#nav-message");
        browser.type_into("#message-query", &delivered_id);
        browser.click("#message-go");
        browser.wait_for("#message-records tr[data-type='Delivery']");
        let records = browser.text("#message-records");
        assert!(records.contains("Reception") && records.contains("Delivery") && records.contains("250"), "{records}");
        assert!(browser.text("#message-facts").contains("dest.example"));
        shot(&browser, "message");
    })
    .await
    .unwrap();
    for page in ["overview", "sources", "pools", "sources-suspended", "queues", "message"] {
        assert!(saved.join(format!("{page}.png")).metadata().unwrap().len() > 1000, "{page} screenshot");
    }
    daemon.stop();
}

/// Sources and pools a policy defines late (`get_egress_source` /
/// `get_egress_pool`, as KumoMTA's sources helper does) are on the console
/// like the init registry's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bound_sources_and_pools_are_on_the_console() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let init = "  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }";
    let events = format!(
        r#"local ADDRESSES = {{ ['late-2'] = '127.0.0.2', ['late-3'] = '127.0.0.3' }}
kumo.on('get_egress_source', function(name)
  return kumo.make_egress_source {{ name = name, source_address = ADDRESSES[name] }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {{ name = 'late-2', weight = 1 }}, {{ name = 'late-3', weight = 2 }} }} }}
end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path {{ prohibited_hosts = {{}} }} end)
{}"#,
        smart_host_events(sink.addr(), "egress_pool = 'late-pool',")
    );
    let daemon = TestDaemon::start(&ws.policy(init, &events)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 30, 3, |i| ("s@a.example".into(), format!("r{i}@dest.example"))).await, 30);
    assert!(eventually(Duration::from_secs(15), || sink.received_count() == 30).await);
    let url = format!("http://{}/api/admin/console/v1", daemon.http[0]);
    let snapshot = || async { petrel_e2e::http("GET", url.clone(), vec![], None).await.json() };
    let mut v = snapshot().await;
    for _ in 0..50 {
        if v["totals"][1] == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        v = snapshot().await;
    }
    let source = |name: &str| v["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned();
    let two = source("late-2").unwrap_or_else(|| panic!("late-2 missing: {v}"));
    assert_eq!(two["address"], "127.0.0.2");
    assert_eq!(two["pools"][0]["pool"], "late-pool");
    assert_eq!(two["delivered"], 10);
    assert_eq!(source("late-3").unwrap()["delivered"], 20);
    let pool = v["pools"].as_array().unwrap().iter().find(|p| p["name"] == "late-pool").cloned().expect("the pool");
    let picks: Vec<(String, u64)> = pool["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"].as_str().unwrap().to_string(), e["recent_picks"].as_u64().unwrap()))
        .collect();
    assert_eq!(picks, vec![("late-2".to_string(), 10), ("late-3".to_string(), 20)]);
    daemon.stop();
}
