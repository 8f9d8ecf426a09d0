//! Scheduled queues with a real spool: release, retry timing, expiry.

use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{QueueConfig, QueueManager, RetryDecision};
use petrel_spool::{RocksSpool, Spool, SpoolPaths};
use petrel_telemetry::{LogConfig, Logger, RecordType, ResponseInfo, read_records};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn message(tenant: &str) -> Message {
    let mut m = Message::new(
        EnvelopeAddress::parse("s@a.example").unwrap(),
        EnvelopeAddress::parse("r@b.example").unwrap(),
        Arc::from(&b"Subject: x\r\n\r\nx\r\n"[..]),
    );
    m.set_meta("tenant", serde_json::json!(tenant));
    m
}

#[tokio::test]
async fn due_messages_are_released_retried_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> =
        Arc::new(RocksSpool::open(&SpoolPaths { meta: dir.path().join("s"), data: dir.path().join("s") }).unwrap());
    let (logger, log_thread) = Logger::start(&LogConfig::new(dir.path().join("logs")), Default::default()).unwrap();
    let config = QueueConfig {
        retry_interval: Duration::from_millis(300),
        max_age: Duration::from_secs(2),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let (manager, mut due) = QueueManager::new(Arc::new(config), spool.clone(), logger.clone(), shutdown.clone());

    let m = message("acme");
    spool.store(std::slice::from_ref(&m)).await.unwrap();
    manager.insert(m.clone());
    let first = tokio::time::timeout(Duration::from_secs(2), due.recv()).await.unwrap().unwrap();
    assert_eq!(first.queue.name(), "acme@b.example");
    assert_eq!(first.messages.len(), 1);
    assert_eq!(first.messages[0].id, m.id);

    // A retry waits about retry_interval before coming back.
    let last = ResponseInfo { code: 451, enhanced_code: None, content: "later".into() };
    let mut failed = first.messages[0].clone();
    failed.num_attempts = 1;
    let started = std::time::Instant::now();
    assert!(matches!(manager.retry(&first.queue, failed, &last).await, RetryDecision::Scheduled(_)));
    assert_eq!(manager.waiting(), 1);
    let again = tokio::time::timeout(Duration::from_secs(2), due.recv()).await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "retried too early");
    assert!(again.messages[0].data.is_none(), "waiting messages keep no body");

    // Attempts double the delay until the next one no longer fits max_age.
    let mut msg = again.messages[0].clone();
    let mut decision = RetryDecision::Expired;
    for attempt in 2..10 {
        msg.num_attempts = attempt;
        decision = manager.retry(&again.queue, msg.clone(), &last).await;
        if decision == RetryDecision::Expired {
            break;
        }
        msg = tokio::time::timeout(Duration::from_secs(3), due.recv()).await.unwrap().unwrap().messages.remove(0);
    }
    assert_eq!(decision, RetryDecision::Expired);
    assert!(spool.enumerate().unwrap().is_empty(), "expired message left the spool");
    drop((manager, logger));
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    log_thread.join().unwrap();
    let records = read_records(&dir.path().join("logs")).unwrap();
    let expired: Vec<_> = records.iter().filter(|r| r.kind == RecordType::Expiration).collect();
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].response.code, expired[0].response.enhanced_code.as_deref()), (551, Some("5.4.7")));
    assert_eq!(expired[0].last_response.as_ref(), Some(&last), "the last reply is kept apart");
}
