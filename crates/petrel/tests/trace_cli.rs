//! `petrel trace-smtp-server` / `trace-smtp-client` against a daemon in
//! process: live transcripts of a message's way in and out.

mod common;

use petrel::{Daemon, DaemonOptions};
use petrel_testkit::Sink;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running trace command and the lines it printed so far.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let watch = Self { child, lines };
        watch.wait_for(|l| l.starts_with("tracing "));
        watch
    }

    fn wait_for(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| want(l)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "never printed; got:\n{}", self.lines.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_of_a_message_in_and_out() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = common::policy(
        dir.path(),
        "  kumo.start_http_listener { listen = '127.0.0.1:0' }\n  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }",
        &common::smart_host(sink.addr(), ""),
    );
    let daemon = Daemon::start(DaemonOptions::new(policy)).await.unwrap();
    let endpoint = format!("http://{}", daemon.http_addrs()[0]);
    let inbound = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || Watch::start(&["trace-smtp-server", "--peer", "127.0.0.0/8", "--endpoint", &endpoint])
    })
    .await
    .unwrap();
    let outbound = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || Watch::start(&["trace-smtp-client", "--site", "mx_list", "--endpoint", &endpoint])
    })
    .await
    .unwrap();
    let elsewhere = tokio::task::spawn_blocking(move || {
        Watch::start(&["trace-smtp-server", "--peer", "10.0.0.0/8", "--endpoint", &endpoint])
    })
    .await
    .unwrap();

    let opts = petrel_smtp_client::ConnectOptions::new(
        Some("127.0.0.1".parse().unwrap()),
        daemon.smtp_addrs()[0],
        "client.test",
    );
    let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
    client.send("s@a.example", "r@dest.example", b"Subject: traced\r\n\r\nhello\r\n").await.unwrap();
    client.quit().await;

    tokio::task::spawn_blocking(move || {
        inbound.wait_for(|l| l.contains("connected (local 127.0.0.1:"));
        inbound.wait_for(|l| l.contains("<- EHLO client.test"));
        inbound.wait_for(|l| l.contains("<- MAIL FROM:<s@a.example>"));
        inbound.wait_for(|l| l.contains("<- [message body: ") && l.contains(" bytes]"));
        inbound.wait_for(|l| l.contains("-> 250 "));
        inbound.wait_for(|l| l.contains("<- QUIT"));
        inbound.wait_for(|l| l.ends_with("closed"));
        outbound.wait_for(|l| l.contains("(mx_list:") && l.contains("connected (local"));
        outbound.wait_for(|l| l.contains("<- 220 "));
        outbound.wait_for(|l| l.contains("-> EHLO "));
        outbound.wait_for(|l| l.contains("-> RCPT TO:<r@dest.example>"));
        outbound.wait_for(|l| l.contains("-> [message body: "));
        assert!(
            !elsewhere.lines.lock().unwrap().iter().any(|l| l.contains("EHLO")),
            "a filter for other peers shows nothing"
        );
        let body = inbound.lines.lock().unwrap().iter().any(|l| l.contains("hello"));
        assert!(!body, "message bodies are never copied");
    })
    .await
    .unwrap();
    daemon.shutdown().await;
}
