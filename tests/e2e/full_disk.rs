//! The daemon on a real small filesystem: low space answers `452 4.3.1`
//! over SMTP and 507 over HTTP, the process never aborts, and acceptance
//! resumes by itself once space returns.

use petrel_e2e::{TestDaemon, Workspace, http};
use petrel_smtp_client::{ConnectOptions, SmtpClient};
use petrel_testkit::SmallDisk;
use std::net::SocketAddr;
use std::time::Duration;

fn policy(ws: &Workspace, disk: &SmallDisk, min_free_space: &str) -> std::path::PathBuf {
    let root = ws.dir.path().display();
    let spool = disk.path().display();
    let text = format!(
        r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{spool}/spool', min_free_space = {min_free_space} }}
  kumo.configure_local_logs {{ log_dir = '{root}/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', hostname = 'petrel.test' }}
  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}
end)
kumo.on('get_queue_config', function()
  -- Hold everything: nothing is delivered, so nothing frees space.
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }}, retry_interval = '1h' }}
end)
"#
    );
    let path = ws.dir.path().join("init.lua");
    std::fs::write(&path, text).unwrap();
    path
}

/// Send 200 KB messages until one is refused; (accepted, refusal).
async fn send_until_refused(server: SocketAddr) -> (usize, String) {
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), server, "injector.test");
    let mut client = SmtpClient::connect(&opts).await.unwrap();
    let body = format!("Subject: big\r\n\r\n{}", "x".repeat(998).repeat(200).replace("xx", "x\r\nx"));
    for n in 0..400 {
        match client.send("s@a.example", &format!("r{n}@b.example"), body.as_bytes()).await {
            Ok(_) => {}
            Err(e) => {
                return (n, e.reply().map(|r| r.to_string()).unwrap_or_else(|| e.to_string()));
            }
        }
    }
    panic!("never refused");
}

async fn accepts_within(server: SocketAddr, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), server, "injector.test");
    while tokio::time::Instant::now() < deadline {
        let mut client = SmtpClient::connect(&opts).await.unwrap();
        if client.send("s@a.example", "again@b.example", b"Subject: again\r\n\r\nx\r\n").await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn inject_status(http_addr: SocketAddr) -> u16 {
    let body = serde_json::json!({"envelope_sender": "s@a.example", "recipients": [{"email": "h@b.example"}],
        "content": "Subject: h\r\n\r\nx\r\n"});
    let url = format!("http://{http_addr}/api/inject/v1");
    http("POST", url, vec![("Content-Type", "application/json".into())], Some(body.to_string().into_bytes()))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_mail_is_deferred_with_452_and_507_until_space_returns() {
    let disk = SmallDisk::mount(24);
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&policy(&ws, &disk, "'25%'")).unwrap();
    let filler = disk.fill(10 << 20);
    let (accepted, refusal) = send_until_refused(daemon.smtp[0]).await;
    assert!(accepted > 0);
    assert!(refusal.starts_with("452 4.3.1"), "{refusal}");
    assert_eq!(inject_status(daemon.http[0]).await, 507);
    let live = http("GET", format!("http://{}/api/check-liveness/v1", daemon.http[0]), vec![], None).await;
    assert_eq!(live.status, 503, "liveness tells load balancers to go elsewhere");

    std::fs::remove_file(filler).unwrap();
    assert!(accepts_within(daemon.smtp[0], Duration::from_secs(10)).await, "accepting again without a restart");
    assert_eq!(inject_status(daemon.http[0]).await, 200);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_really_fills_defers_mail_and_the_daemon_survives() {
    let disk = SmallDisk::mount(24);
    let ws = Workspace::new();
    let policy = policy(&ws, &disk, "0");
    let daemon = TestDaemon::start(&policy).unwrap();
    let filler = disk.fill(4 << 20);
    let (accepted, refusal) = send_until_refused(daemon.smtp[0]).await;
    assert!(refusal.starts_with("452 4.3.1"), "{refusal}");
    std::fs::remove_file(filler).unwrap();
    assert!(accepts_within(daemon.smtp[0], Duration::from_secs(10)).await, "accepting again without a restart");
    daemon.stop();
    // Everything acknowledged (and the one after recovery) is still there.
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, accepted + 1);
    again.stop();
}
