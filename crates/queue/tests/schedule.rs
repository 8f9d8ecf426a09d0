//! Scheduled queues with a real spool: release, retry timing, expiry.

use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{ManualClock, QueueConfig, QueueManager, RetryDecision};
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

/// The next release, waiting at most 100 ms of real time.
async fn next(due: &mut tokio::sync::mpsc::UnboundedReceiver<petrel_queue::Due>) -> Option<petrel_queue::Due> {
    tokio::time::timeout(Duration::from_millis(100), due.recv()).await.ok().flatten()
}

#[tokio::test]
async fn due_messages_are_released_retried_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> =
        Arc::new(RocksSpool::open(&SpoolPaths { meta: dir.path().join("s"), data: dir.path().join("s") }).unwrap());
    let (logger, log_thread) = Logger::start(&LogConfig::new(dir.path().join("logs")), Default::default()).unwrap();
    // Real retry settings; a manual clock moves through them at once.
    let config = QueueConfig {
        retry_interval: Duration::from_secs(20 * 60),
        max_age: Duration::from_secs(3 * 3600),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let clock = Arc::new(ManualClock::new());
    let (manager, mut due) = QueueManager::with_clock(
        Arc::new(config),
        spool.clone(),
        logger.clone(),
        shutdown.clone(),
        clock.clone(),
        "mta.test".into(),
    );

    let m = message("acme");
    spool.store(std::slice::from_ref(&m)).await.unwrap();
    manager.insert(m.clone());
    let first = next(&mut due).await.expect("released at once");
    assert_eq!(first.queue.name(), "acme@b.example");
    assert_eq!(first.messages.len(), 1);
    assert_eq!(first.messages[0].id, m.id);

    // A retry waits about retry_interval (with jitter) before coming back.
    let last = ResponseInfo { code: 451, enhanced_code: None, content: "later".into(), command: None };
    let mut failed = first.messages[0].clone();
    failed.num_attempts = 1;
    assert!(matches!(manager.retry(&first.queue, failed, &last).await, RetryDecision::Scheduled(_)));
    assert_eq!(manager.waiting(), 1);
    clock.advance(Duration::from_secs(10 * 60));
    assert!(next(&mut due).await.is_none(), "not before retry_interval (less its jitter)");
    clock.advance(Duration::from_secs(20 * 60));
    let again = next(&mut due).await.expect("due after retry_interval");
    assert!(again.messages[0].data.is_none(), "waiting messages keep no body");

    // Attempts double the delay until the next one no longer fits max_age.
    let mut msg = again.messages[0].clone();
    let mut decision = RetryDecision::Expired;
    for attempt in 2..20 {
        msg.num_attempts = attempt;
        decision = manager.retry(&again.queue, msg.clone(), &last).await;
        let RetryDecision::Scheduled(at) = decision else { break };
        clock.advance((at - petrel_queue::Clock::now(&*clock)).to_std().unwrap_or_default());
        msg = next(&mut due).await.expect("released after its delay").messages.remove(0);
    }
    assert_eq!(decision, RetryDecision::Expired);
    // The expired message left the spool; the sender's notification of
    // the expiry took its place.
    let left = spool.enumerate().unwrap();
    assert_eq!(left.len(), 1, "only the notification is spooled");
    assert!(left[0].sender.is_null() && left[0].recipient == m.sender, "a DSN to the sender");
    assert_eq!(left[0].meta_str("dsn_of"), Some(m.id.to_string().as_str()));
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
