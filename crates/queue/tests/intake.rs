//! The admission path over the in-memory spool: stored before queued,
//! logged, and nothing queued when the store fails.

use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{Intake, QueueConfig, QueueManager, ReceptionInfo};
use petrel_spool::{MemorySpool, Spool};
use petrel_telemetry::{Logger, ResponseInfo};
use std::sync::Arc;

fn message(n: usize) -> Message {
    Message::new(
        EnvelopeAddress::parse("s@a.example").unwrap(),
        EnvelopeAddress::parse(&format!("r{n}@b.example")).unwrap(),
        Arc::from(&b"Subject: x\r\n\r\nx\r\n"[..]),
    )
}

#[tokio::test]
async fn admitted_mail_is_stored_then_queued_and_a_failed_store_queues_nothing() {
    let spool = Arc::new(MemorySpool::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (queues, _due) =
        QueueManager::new(Arc::new(QueueConfig::default()), spool.clone(), Logger::disabled(), shutdown.clone());
    let intake = Intake::new(spool.clone(), queues.clone(), Logger::disabled());
    let from = ReceptionInfo {
        peer_address: "127.0.0.1:5000".into(),
        peer_name: "client.test".into(),
        protocol: "ESMTP".into(),
        tls: None,
    };
    let ok = ResponseInfo { code: 250, enhanced_code: Some("2.0.0".into()), content: "OK".into(), command: None };

    intake.admit(vec![message(1), message(2)], &from, &ok).await.unwrap();
    assert_eq!(spool.len(), 2);
    assert_eq!(queues.summary().iter().map(|q| q.messages).sum::<usize>(), 2, "both queued");

    spool.fail_writes(true);
    assert!(!intake.accepting());
    assert!(intake.admit(vec![message(3)], &from, &ok).await.is_err());
    assert_eq!(spool.enumerate().unwrap().len(), 2, "nothing half-admitted");
    assert_eq!(queues.summary().iter().map(|q| q.messages).sum::<usize>(), 2, "nothing queued that is not stored");
    shutdown.cancel();
}
