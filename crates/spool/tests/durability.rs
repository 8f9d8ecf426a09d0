//! The spool against a real RocksDB in a temp dir: what is stored comes back
//! after reopening, removals stick (awaited or queued), and concurrent
//! stores share syncs.

use petrel_message::{EnvelopeAddress, Message};
use petrel_spool::{RocksSpool, Spool, SpoolPaths};
use std::sync::Arc;

fn message(n: usize) -> Message {
    let mut m = Message::new(
        EnvelopeAddress::parse("s@a.example").unwrap(),
        EnvelopeAddress::parse(&format!("r{n}@b.example")).unwrap(),
        Arc::from(format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes()),
    );
    m.set_meta("tenant", serde_json::json!("t"));
    m
}

async fn round_trip(paths: SpoolPaths) {
    let ids;
    {
        let spool = Arc::new(RocksSpool::open(&paths).unwrap());
        let mut tasks = Vec::new();
        for n in 0..200 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                let m = message(n);
                spool.store(std::slice::from_ref(&m)).await.unwrap();
                m.id
            }));
        }
        let mut stored = Vec::new();
        for t in tasks {
            stored.push(t.await.unwrap());
        }
        for id in &stored[..50] {
            spool.remove(*id).await.unwrap();
        }
        // Queued removals go in order with later writes: once a store sent
        // after them is durable, they are applied.
        for id in &stored[50..60] {
            spool.remove_later(*id);
        }
        let mut updated = message(999);
        spool.store(std::slice::from_ref(&updated)).await.unwrap();
        assert!(spool.load_meta(stored[55]).await.is_err(), "a queued removal is applied before a later store");
        // And the ones still queued when the spool closes are written first.
        for id in &stored[60..70] {
            spool.remove_later(*id);
        }
        updated.num_attempts = 3;
        spool.update_meta(&updated).await.unwrap();
        stored.push(updated.id);
        ids = stored;
    }
    // Reopen: only the 130 kept plus the updated one come back.
    let spool = RocksSpool::open(&paths).unwrap();
    let back = spool.enumerate().unwrap();
    assert_eq!(back.len(), 131);
    assert!(back.iter().all(|m| !ids[..70].contains(&m.id)));
    assert!(back.iter().all(|m| m.data.is_none() && m.meta_str("tenant") == Some("t")));
    let last = back.iter().find(|m| m.id == *ids.last().unwrap()).unwrap();
    assert_eq!(last.num_attempts, 3);
    let body = spool.load_data(ids[100]).await.unwrap();
    assert!(body.starts_with(b"Subject: "));
    assert!(spool.load_data(ids[0]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_database() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(SpoolPaths { meta: dir.path().into(), data: dir.path().into() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_meta_and_data_databases() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(SpoolPaths { meta: dir.path().join("meta"), data: dir.path().join("data") }).await;
}
