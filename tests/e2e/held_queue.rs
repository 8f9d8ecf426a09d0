//! A queue whose `get_queue_config` fails is held, says why, and is
//! released as soon as a reload fixes the policy.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, http, inject, smart_host_events};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_queue_shows_its_error_and_a_fixing_reload_releases_it_at_once() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let http_listener = "  kumo.start_http_listener { listen = '127.0.0.1:0' }";
    let broken = "kumo.on('get_queue_config', function(domain)\n  error('no settings for ' .. domain)\nend)";
    let daemon = TestDaemon::start(&ws.policy(http_listener, broken)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@held.example".into())).await, 1);
    let summary_url = format!("http://{}/api/admin/queue-summary/v1", daemon.http[0]);
    let mut held = String::new();
    let shows_held = eventually(Duration::from_secs(5), || {
        let url = summary_url.clone();
        held = std::thread::spawn(move || ureq::get(&url).call().unwrap().into_string().unwrap()).join().unwrap();
        held.contains("no settings for held.example")
    })
    .await;
    assert!(shows_held, "{held}");
    assert!(held.contains("\"held\":\""), "{held}");

    ws.policy(http_listener, &smart_host_events(sink.addr(), ""));
    let reload = http("POST", format!("http://{}/api/admin/reload/v1", daemon.http[0]), vec![], None).await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    let fixed = Instant::now();
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert!(
        fixed.elapsed() < Duration::from_secs(5),
        "released at once, not after the 60 s pause: {:?}",
        fixed.elapsed()
    );
    daemon.stop();
}
