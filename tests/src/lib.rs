//! Harness for end-to-end tests: a daemon on its own runtime (so a test can
//! crash it by dropping every task at once), policy files written from
//! templates, and an SMTP injector.

pub mod browser;

use petrel::{Controls, Daemon};
use petrel_smtp_client::{ConnectOptions, SmtpClient};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub use petrel::DaemonOptions;
pub use petrel_testkit::{DnsServer, Sink, Zone, eventually};

enum Stop {
    Graceful,
    Crash,
}

/// A daemon running on a dedicated runtime and thread.
pub struct TestDaemon {
    /// SMTP listener addresses.
    pub smtp: Vec<SocketAddr>,
    /// HTTP listener addresses.
    pub http: Vec<SocketAddr>,
    /// Messages recovered from the spool at start.
    pub recovered: usize,
    /// Operator actions on the running daemon.
    pub controls: Controls,
    stop: mpsc::Sender<Stop>,
    thread: std::thread::JoinHandle<()>,
}

impl TestDaemon {
    /// A daemon that reloads only when asked (no file watching).
    pub fn start(policy: &Path) -> Result<Self, String> {
        Self::start_with(DaemonOptions { watch_policy: false, ..DaemonOptions::new(policy) })
    }

    /// Start a daemon with `options`; the error says why it did not start.
    pub fn start_with(options: DaemonOptions) -> Result<Self, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let daemon = match rt.block_on(Daemon::start(options)) {
                Ok(d) => d,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ =
                ready_tx.send(Ok((daemon.smtp_addrs(), daemon.http_addrs(), daemon.recovered(), daemon.controls())));
            match stop_rx.recv().unwrap_or(Stop::Crash) {
                Stop::Graceful => rt.block_on(daemon.shutdown()),
                Stop::Crash => {
                    // Every task is dropped wherever it stands: no goodbyes,
                    // no final writes. Only what was synced survives.
                    drop(daemon);
                    rt.shutdown_timeout(std::time::Duration::from_secs(10));
                }
            }
        });
        let (smtp, http, recovered, controls) =
            tokio::task::block_in_place(|| ready_rx.recv()).map_err(|e| e.to_string())??;
        Ok(Self { smtp, http, recovered, controls, stop: stop_tx, thread })
    }

    /// Stop as `SIGTERM` would, and wait for it.
    pub fn stop(self) {
        self.finish(Stop::Graceful);
    }

    /// Stop without any shutdown work, as a crash would.
    pub fn crash(self) {
        self.finish(Stop::Crash);
    }

    fn finish(self, how: Stop) {
        // Our handle keeps daemon state (and its log writer) alive: let go first.
        let TestDaemon { controls, stop, thread, .. } = self;
        drop(controls);
        let _ = stop.send(how);
        tokio::task::block_in_place(|| thread.join()).expect("daemon thread");
    }
}

/// A temp dir holding a policy, its spool and its logs.
pub struct Workspace {
    /// The temp dir; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A fresh temp dir.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// Where the daemon writes its logs.
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Write `init.lua`: the standard spool, logs and one listener on a
    /// kernel-chosen port, then `init_extra` inside init, then `events`.
    pub fn policy(&self, init_extra: &str, events: &str) -> PathBuf {
        let root = self.dir.path().display();
        let text = format!(
            r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{root}/spool' }}
  kumo.configure_local_logs {{ log_dir = '{root}/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', hostname = 'petrel.test', relay_hosts = {{ '127.0.0.1' }} }}
{init_extra}
end)
{events}
"#
        );
        let path = self.dir.path().join("init.lua");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Every log record written so far, in order.
    pub fn records(&self) -> Vec<petrel_telemetry::LogRecord> {
        petrel_telemetry::read_records(&self.logs()).unwrap_or_default()
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// The usual queue config event: everything to `sink` as a smart host, with
/// retries every `retry` and the given extra fields.
pub fn smart_host_events(sink: SocketAddr, fields: &str) -> String {
    format!(
        r#"kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }},
    {fields}
  }}
end)"#
    )
}

/// Send `count` messages over SMTP to `server`, `conns` connections at a
/// time; `make(i)` gives sender and recipient of message `i`. Returns how
/// many got a 250.
pub async fn inject(
    server: SocketAddr,
    count: usize,
    conns: usize,
    make: impl Fn(usize) -> (String, String) + Send + Sync + 'static,
) -> usize {
    let make = std::sync::Arc::new(make);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), server, "injector.test");
            let mut client = SmtpClient::connect(&opts).await.expect("connect to petrel");
            let mut ok = 0;
            for i in (c..count).step_by(conns) {
                let (from, to) = make(i);
                let body = format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: message {i}\r\n\r\nbody of {i}\r\n");
                if client.send(&from, &to, body.as_bytes()).await.is_ok() {
                    ok += 1;
                }
            }
            client.quit().await;
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// Send each `(sender, recipient, body)` on its own connection from
/// `from` (an address of 127.0.0.0/8, so relay rules can be tested).
/// Each result is `Ok` for a 250, else the server's reply.
pub async fn send_each(
    server: SocketAddr,
    from: std::net::IpAddr,
    messages: Vec<(String, String, String)>,
) -> Vec<Result<(), String>> {
    let mut results = Vec::new();
    for (sender, recipient, body) in messages {
        let opts = ConnectOptions::new(Some(from), server, "injector.test");
        let mut client = SmtpClient::connect(&opts).await.expect("connect to petrel");
        results.push(client.send(&sender, &recipient, body.as_bytes()).await.map(|_| ()).map_err(|e| e.to_string()));
        client.quit().await;
    }
    results
}

/// An HTTP response as a test sees it.
pub struct HttpReply {
    /// The HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl HttpReply {
    /// The body parsed as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP request (blocking client run off the async runtime). POST,
/// PUT and DELETE carry `Content-Type: application/json` unless `headers`
/// set another.
pub async fn http(method: &str, url: String, headers: Vec<(&'static str, String)>, body: Option<Vec<u8>>) -> HttpReply {
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let mut request = ureq::request(&method, &url);
        // A JSON API: say so unless the test sends something else on purpose.
        let typed = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !typed && matches!(method.as_str(), "POST" | "PUT" | "DELETE") {
            request = request.set("Content-Type", "application/json");
        }
        for (k, v) in &headers {
            request = request.set(k, v);
        }
        let result = match body {
            Some(bytes) => request.send_bytes(&bytes),
            None => request.call(),
        };
        match result {
            Ok(r) => HttpReply { status: r.status(), body: r.into_string().unwrap_or_default() },
            Err(ureq::Error::Status(status, r)) => HttpReply { status, body: r.into_string().unwrap_or_default() },
            Err(e) => panic!("HTTP request to {url} failed: {e}"),
        }
    })
    .await
    .unwrap()
}
