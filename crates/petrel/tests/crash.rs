//! Kill -9 at random moments while mail flows in: every message that got a
//! 250 must reach the sink, and duplicates (possible only for deliveries in
//! flight at a kill) are counted and bounded: per kill, two per connection —
//! the message on the wire and the one before it, whose removal a
//! connection does not wait for.

mod common;

use common::{free_port, serve, signal};
use petrel_smtp_client::{ConnectOptions, SmtpClient};
use petrel_testkit::{Sink, eventually};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KILLS: usize = 10;
const CONNECTION_LIMIT: usize = 4;

fn start(dir: &std::path::Path, sink: std::net::SocketAddr) -> (Child, u16) {
    let port = free_port();
    let policy = dir.join("init.lua");
    std::fs::write(
        &policy,
        format!(
            r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{root}/spool' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}', relay_hosts = {{ '127.0.0.1' }} }}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = 1, protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ connection_limit = {CONNECTION_LIMIT} }}
end)
"#,
            root = dir.display()
        ),
    )
    .unwrap();
    (serve(&policy, port, Stdio::null()), port)
}

/// Send messages one after another until the daemon goes away; record the
/// ones it acknowledged.
async fn inject_until_dead(port: u16, next_id: Arc<Mutex<usize>>, acked: Arc<Mutex<HashSet<usize>>>) {
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), ([127, 0, 0, 1], port).into(), "crash.test");
    let Ok(mut client) = SmtpClient::connect(&opts).await else { return };
    loop {
        let id = {
            let mut n = next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let body = format!("Subject: crash test {id}\r\n\r\nmessage {id}\r\n");
        match client.send("s@a.example", &format!("m{id}@d.example"), body.as_bytes()).await {
            Ok(_) => {
                acked.lock().unwrap().insert(id);
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mail_survives_repeated_sigkill() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let next_id = Arc::new(Mutex::new(0));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    for _ in 0..KILLS {
        let (mut child, port) = start(dir.path(), sink.addr());
        let injectors: Vec<_> =
            (0..3).map(|_| tokio::spawn(inject_until_dead(port, next_id.clone(), acked.clone()))).collect();
        let pause = rand::random_range(150..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for i in injectors {
            let _ = i.await;
        }
    }
    let acked: HashSet<usize> = acked.lock().unwrap().clone();
    let (mut child, _) = start(dir.path(), sink.addr());
    let all_there = eventually(Duration::from_secs(90), || {
        let got: HashSet<usize> = sink.received().iter().filter_map(|m| id_of(&m.recipients[0])).collect();
        acked.is_subset(&got)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "-TERM");
    let _ = child.wait();

    let mut copies: HashMap<usize, usize> = HashMap::new();
    for m in sink.received() {
        if let Some(id) = id_of(&m.recipients[0]) {
            *copies.entry(id).or_default() += 1;
        }
    }
    let missing: Vec<&usize> = acked.iter().filter(|id| !copies.contains_key(id)).collect();
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    println!(
        "crash test: {KILLS} SIGKILLs, {} messages acknowledged, {} delivered, {} missing, {duplicates} duplicate deliveries (bound {})",
        acked.len(),
        copies.len(),
        missing.len(),
        KILLS * CONNECTION_LIMIT * 2
    );
    assert!(all_there && missing.is_empty(), "acknowledged but never delivered: {missing:?}");
    assert!(acked.len() > KILLS * 10, "enough traffic to mean something: {}", acked.len());
    assert!(duplicates <= KILLS * CONNECTION_LIMIT * 2, "{duplicates} duplicates");
}

fn id_of(recipient: &str) -> Option<usize> {
    recipient.strip_prefix('m')?.split('@').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_deliveries_in_flight_and_exits_cleanly() {
    let sink = Sink::start().await;
    sink.set_reply_delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start(dir.path(), sink.addr());
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), ([127, 0, 0, 1], port).into(), "client.test");
    let mut idle = SmtpClient::connect(&opts).await.unwrap();
    let mut sender = SmtpClient::connect(&opts).await.unwrap();
    sender.send("s@a.example", "m1@d.example", b"Subject: in flight\r\n\r\nx\r\n").await.unwrap();
    // Wait until the delivery is in progress (the sink is holding its reply).
    assert!(eventually(Duration::from_secs(10), || sink.transactions() == 1).await);
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = idle.rset().await.unwrap_err();
    assert_eq!(refused.reply().map(|r| r.code), Some(421), "{refused}");
    assert_eq!(refused.reply().unwrap().enhanced.unwrap().to_string(), "4.3.2");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(sink.received_count(), 1, "the delivery in flight finished");
    // It was finished, not just sent: a restart has nothing to deliver again.
    sink.set_reply_delay(Duration::ZERO);
    let (mut again, _) = start(dir.path(), sink.addr());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.received_count(), 1, "no second delivery");
    again.kill().unwrap();
    let _ = again.wait();
}
