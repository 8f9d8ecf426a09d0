//! The spool on a real, size-limited filesystem (a tmpfs mounted for the
//! test): a full disk defers new mail and never aborts the process, mail
//! is accepted again once space returns, and nothing acknowledged is lost.
//! Mounting needs root, as `make test` runs in CI.

use petrel_message::{EnvelopeAddress, Message, SpoolId};
use petrel_spool::{RocksSpool, Spool, SpoolError, SpoolPaths, SpoolReserves, StorageReserve, Threshold};
use petrel_testkit::SmallDisk;
use std::sync::Arc;
use std::time::Duration;

fn spool_paths(disk: &SmallDisk) -> SpoolPaths {
    let p = disk.path().join("spool");
    SpoolPaths { meta: p.clone(), data: p }
}

fn message(n: usize, size: usize) -> Message {
    Message::new(
        EnvelopeAddress::parse("s@a.example").unwrap(),
        EnvelopeAddress::parse(&format!("r{n}@b.example")).unwrap(),
        Arc::from(vec![b'x'; size]),
    )
}

/// Store until the spool refuses; returns the acknowledged ids and the
/// first refusal.
async fn store_until_refused(spool: &RocksSpool, size: usize) -> (Vec<SpoolId>, SpoolError) {
    let mut acked = Vec::new();
    for n in 0..500 {
        let m = message(n, size);
        match spool.store(std::slice::from_ref(&m)).await {
            Ok(()) => acked.push(m.id),
            Err(e) => return (acked, e),
        }
    }
    panic!("the spool never refused a write on a full disk");
}

async fn store_within(spool: &RocksSpool, limit: Duration) -> SpoolId {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = message(9999, 1000);
        match spool.store(std::slice::from_ref(&m)).await {
            Ok(()) => return m.id,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("still refusing after {limit:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn reopened_ids(paths: &SpoolPaths) -> Vec<SpoolId> {
    let spool = RocksSpool::open_with(paths, SpoolReserves::uniform(StorageReserve::none())).unwrap();
    spool.enumerate().unwrap().into_iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn a_full_disk_fails_writes_without_aborting_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount(20);
    let paths = spool_paths(&disk);
    let mut acked;
    {
        let spool = RocksSpool::open_with(&paths, SpoolReserves::uniform(StorageReserve::none())).unwrap();
        let filler = disk.fill(4 << 20);
        let refusal;
        (acked, refusal) = store_until_refused(&spool, 200_000).await;
        assert!(matches!(refusal, SpoolError::Storage(_)), "{refusal}");
        assert!(refusal.is_transient());
        assert!(!acked.is_empty());
        // Still refusing, still alive.
        assert!(spool.store(&[message(1, 200_000)]).await.is_err());
        assert!(!spool.is_healthy());

        std::fs::remove_file(filler).unwrap();
        acked.push(store_within(&spool, Duration::from_secs(10)).await);
        assert!(spool.is_healthy(), "healthy again without a restart");
        // Reads work on the reopened database.
        assert_eq!(spool.load_data(acked[0]).await.unwrap().len(), 200_000);
    }
    let mut found = reopened_ids(&paths);
    found.sort();
    acked.sort();
    assert_eq!(found, acked, "every acknowledged message, and only those, is in the spool");
}

#[tokio::test]
async fn the_reserve_defers_mail_before_the_disk_is_full() {
    let disk = SmallDisk::mount(20);
    let paths = spool_paths(&disk);
    // 20 MiB with 25 % reserved: refusals start near 5 MiB free.
    let reserve = StorageReserve { min_free_space: Threshold::Percent(25.0), ..StorageReserve::none() };
    let spool = RocksSpool::open_with(&paths, SpoolReserves::uniform(reserve)).unwrap();
    let filler = disk.fill(9 << 20);
    let (acked, refusal) = store_until_refused(&spool, 100_000).await;
    assert!(matches!(refusal, SpoolError::NoSpace), "the reserve refused, not the disk: {refusal}");
    assert!(disk.free() > 3 << 20, "space is left for removals and updates");
    assert!(!spool.is_healthy());
    // Removals still work while new mail is refused.
    spool.remove(acked[0]).await.unwrap();

    std::fs::remove_file(filler).unwrap();
    store_within(&spool, Duration::from_secs(5)).await;
    assert!(spool.is_healthy());
    drop(spool);
    assert_eq!(reopened_ids(&paths).len(), acked.len(), "one removed, one added");
}
