//! `petrel serve` tells its operator what it does: a status line while
//! anything happens, and a line per bounce.

mod common;

use petrel_testkit::Sink;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sum a field over every status line (`delivered 2` → 2).
fn total(lines: &[String], field: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l.contains("status: last"))
        .filter_map(|l| l.split(&format!("{field} ")).nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_status_lines_and_each_bounce() {
    let sink = Sink::start_with(Arc::new(|m, _| {
        if m.recipients[0].starts_with("nobody@") {
            (550, "5.1.1 no such user".into())
        } else {
            (250, "2.0.0 ok".into())
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let policy = common::policy(
        dir.path(),
        &format!("  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}', relay_hosts = {{ '127.0.0.1' }} }}"),
        &common::smart_host(sink.addr(), "generate_bounces = false,"),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["serve", "--status-interval", "1", "--policy"])
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (lines, stderr) = (lines.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let opts = petrel_smtp_client::ConnectOptions::new(
        Some("127.0.0.1".parse().unwrap()),
        format!("127.0.0.1:{port}").parse().unwrap(),
        "client.test",
    );
    let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
    for rcpt in ["someone@dest.example", "nobody@dest.example"] {
        client.send("s@a.example", rcpt, b"Subject: hi\r\n\r\nhello\r\n").await.unwrap();
    }
    client.quit().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = lines.lock().unwrap().clone();
        if total(&seen, "received") == 2 && total(&seen, "delivered") == 1 && total(&seen, "bounced") == 1 {
            let bounce = seen.iter().find(|l| l.contains("bounced") && l.contains("nobody@dest.example"));
            let bounce = bounce.unwrap_or_else(|| panic!("no bounce line in:\n{}", seen.join("\n")));
            assert!(bounce.contains("550 5.1.1 no such user") || bounce.contains("no such user"), "{bounce}");
            break;
        }
        assert!(Instant::now() < deadline, "status lines did not add up:\n{}", seen.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once everything is done, a quiet daemon prints no more status lines.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = lines.lock().unwrap().iter().filter(|l| l.contains("status: last")).count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = lines.lock().unwrap().iter().filter(|l| l.contains("status: last")).count();
    assert_eq!(before, after, "quiet: no status lines");
    common::signal(&child, "-TERM");
    let _ = child.wait();
    reader.join().unwrap();
}
