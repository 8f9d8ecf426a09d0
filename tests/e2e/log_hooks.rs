//! Log hooks as a platform consumes them: `policy-extras.log_hooks`
//! posts every record to a real HTTP server on loopback through Petrel's
//! own queues. The webhook is down for a while (refusing connections, then
//! answering 500): nothing is lost, nothing arrives twice, and each
//! message's events arrive in order; a 400 is logged and dropped.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, send_each, smart_host_events};
use petrel_telemetry::RecordType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the webhook answers and what it accepted.
#[derive(Default)]
struct Webhook {
    /// 0: answer by content (400 for records about `bad@`, else 200);
    /// any other value is the status for every request.
    status: AtomicU16,
    /// Bodies answered 2xx, in arrival order.
    accepted: parking_lot::Mutex<Vec<serde_json::Value>>,
    requests: std::sync::atomic::AtomicUsize,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// Serve `hook` on `listener` (HTTP/1.1, keep-alive).
fn serve(listener: TcpListener, hook: Arc<Webhook>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let hook = hook.clone();
            tokio::spawn(async move {
                while let Some(body) = read_request(&mut stream).await {
                    hook.requests.fetch_add(1, Ordering::SeqCst);
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let fixed = hook.status.load(Ordering::SeqCst);
                    let about_bad =
                        |v: &serde_json::Value| v["recipient"].as_str().is_some_and(|r| r.starts_with("bad@"));
                    let status = match fixed {
                        0 if about_bad(&json) => 400,
                        0 => 200,
                        s => s,
                    };
                    if status == 200 {
                        hook.accepted.lock().push(json);
                    }
                    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

fn policy(ws: &Workspace, sink: SocketAddr, url: &str, batch: &str) -> std::path::PathBuf {
    let hooks = format!(
        "local log_hooks = require 'policy-extras.log_hooks'\n\
         log_hooks:new_json {{ name = 'webhook', url = '{url}', {batch}\n\
           queue_config = {{ retry_interval = '1s', max_retry_interval = '1s' }},\n\
           log_parameters = {{ headers = {{ 'Subject' }} }} }}\n{}",
        smart_host_events(sink, "")
    );
    ws.policy("", &hooks)
}

fn messages() -> Vec<(String, String, String)> {
    (0..6)
        .map(|i| {
            let rcpt = if i == 5 { "bad@dest.test".to_string() } else { format!("r{i}@dest.test") };
            (
                "s@sender.test".to_string(),
                rcpt.clone(),
                format!("From: <s@sender.test>\r\nTo: <{rcpt}>\r\nSubject: hooked {i}\r\n\r\nhi\r\n"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_a_webhook_that_was_down_exactly_once_and_in_order() {
    let sink = Sink::start().await;
    // Reserve a port, then close it: the webhook starts out down.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/log");
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&policy(&ws, sink.addr(), &url, "")).unwrap();
    let results = send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), messages()).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        eventually(Duration::from_secs(10), || sink.received_count() == 6).await,
        "{:?}",
        ws.records().iter().map(|r| (r.kind, r.queue.clone(), r.response.content.clone())).collect::<Vec<_>>()
    );
    // Connections are refused for a while: the hook's queue retries.
    let refused =
        || ws.records().iter().filter(|r| r.queue == "webhook" && r.kind == RecordType::TransientFailure).count();
    assert!(eventually(Duration::from_secs(10), || refused() >= 2).await, "the hook's queue retries");

    // Up, but failing with 500 at first: still retried.
    let hook = Arc::new(Webhook::default());
    hook.status.store(500, Ordering::SeqCst);
    let server = serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), hook.clone());
    assert!(eventually(Duration::from_secs(10), || hook.requests.load(Ordering::SeqCst) >= 2).await);
    assert!(hook.accepted.lock().is_empty());
    hook.status.store(0, Ordering::SeqCst);

    // Every Reception and Delivery of the five good messages arrives.
    let good = |kind: &str| hook.accepted.lock().iter().filter(|r| r["type"] == kind).count();
    assert!(
        eventually(Duration::from_secs(20), || good("Reception") == 5 && good("Delivery") == 5).await,
        "received {:?}",
        hook.accepted.lock().iter().map(|r| (r["type"].clone(), r["recipient"].clone())).collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = hook.accepted.lock().clone();
    let mut seen = std::collections::HashSet::new();
    for record in &accepted {
        let key = (record["id"].as_str().unwrap().to_string(), record["type"].as_str().unwrap().to_string());
        assert!(seen.insert(key.clone()), "{key:?} arrived twice");
        assert_ne!(record["queue"], "webhook", "records of the hook's own deliveries are not posted");
        assert!(record["headers"]["Subject"].as_str().is_some_and(|s| s.starts_with("hooked")), "{record}");
    }
    for id in accepted.iter().map(|r| r["id"].as_str().unwrap()) {
        let kinds: Vec<&str> = accepted.iter().filter(|r| r["id"] == id).map(|r| r["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Reception", "Delivery"], "in order for {id}");
    }
    assert!(accepted.iter().all(|r| r["recipient"] != "bad@dest.test"), "the 400s are not accepted");
    // The 400s were logged as bounces of the hook's queue and dropped.
    let dropped = || {
        ws.records()
            .iter()
            .filter(|r| r.queue == "webhook" && r.kind == RecordType::Bounce && r.recipient == "bad@dest.test")
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || dropped() == 2).await,
        "both records about bad@ were refused for good: {}",
        dropped()
    );
    daemon.stop();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_hooks_post_json_arrays() {
    let sink = Sink::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/log", listener.local_addr().unwrap());
    let hook = Arc::new(Webhook::default());
    let server = serve(listener, hook.clone());
    let ws = Workspace::new();
    let daemon =
        TestDaemon::start(&policy(&ws, sink.addr(), &url, "batch_size = 4, batch_timeout = '300ms',")).unwrap();
    let good: Vec<_> = messages().into_iter().take(5).collect();
    let results = send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), good).await;
    assert!(results.iter().all(Result::is_ok));
    let records = || hook.accepted.lock().iter().map(|b| b.as_array().map_or(0, Vec::len)).sum::<usize>();
    assert!(eventually(Duration::from_secs(20), || records() == 10).await, "got {}", records());
    let bodies = hook.accepted.lock().clone();
    assert!(bodies.iter().all(|b| b.is_array() && b.as_array().unwrap().len() <= 4), "arrays of at most 4");
    assert!(bodies.len() < 10, "records were batched: {} posts", bodies.len());
    daemon.stop();
    server.abort();
}
