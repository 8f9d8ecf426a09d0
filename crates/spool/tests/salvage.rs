//! A damaged spool is never opened silently: the daemon's open refuses it,
//! `check` says what is readable and names the ids it lost, and `repair`
//! builds a fresh spool from what is readable and quarantines the rest.

use petrel_message::{EnvelopeAddress, Message, SpoolId};
use petrel_spool::{RocksSpool, Spool, SpoolError, SpoolPaths, check, repair};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

fn message(n: usize) -> Message {
    Message::new(
        EnvelopeAddress::parse("s@a.example").unwrap(),
        EnvelopeAddress::parse(&format!("r{n}@b.example")).unwrap(),
        Arc::from(format!("Subject: {n}\r\n\r\n{}\r\n", "y".repeat(3000)).into_bytes()),
    )
}

fn paths(dir: &Path) -> SpoolPaths {
    SpoolPaths { meta: dir.into(), data: dir.into() }
}

/// 60 messages, one synced store each; with `flush`, all in SST files.
async fn spool_of_60(dir: &Path, flush: bool) -> BTreeSet<SpoolId> {
    let spool = RocksSpool::open(&paths(dir)).unwrap();
    let mut ids = BTreeSet::new();
    for n in 0..60 {
        let m = message(n);
        spool.store(std::slice::from_ref(&m)).await.unwrap();
        ids.insert(m.id);
    }
    if flush {
        spool.flush().unwrap();
    }
    ids
}

fn file_with_ext(dir: &Path, ext: &str) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext) && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    files.sort();
    files.pop().unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

fn scribble(file: &Path, at: usize, len: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    for b in &mut bytes[at..at + len] {
        *b = 0xa5;
    }
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test]
async fn garbage_in_the_middle_of_the_wal_is_refused_then_salvaged_with_the_lost_ids_named() {
    let dir = tempfile::tempdir().unwrap();
    let ids = spool_of_60(dir.path(), false).await;
    let wal = file_with_ext(dir.path(), "log");
    let size = std::fs::metadata(&wal).unwrap().len() as usize;
    // Inside one message's body: its record fails its checksum.
    scribble(&wal, size / 2, 64);

    match RocksSpool::open(&paths(dir.path())) {
        Err(SpoolError::Damaged { reason, .. }) => assert!(reason.contains("Corruption"), "{reason}"),
        Err(e) => panic!("expected Damaged, got {e}"),
        Ok(_) => panic!("a spool with a damaged WAL opened as if whole"),
    }

    let report = check(&paths(dir.path())).unwrap();
    assert!(!report.is_clean());
    assert!(report.messages >= 55 && report.messages < 60, "{report:?}");
    assert!(!report.lost.is_empty(), "the damaged record's id is named");
    assert!(report.lost.is_subset(&ids));
    assert_eq!(report.messages + report.lost.len(), 60, "every message is either salvaged or named: {report:?}");

    let fresh = tempfile::tempdir().unwrap();
    let quarantine = tempfile::tempdir().unwrap();
    let repaired = repair(&paths(dir.path()), &paths(&fresh.path().join("spool")), quarantine.path()).await.unwrap();
    assert_eq!(repaired.messages, report.messages);
    let listed = std::fs::read_to_string(quarantine.path().join("lost-ids.txt")).unwrap();
    assert_eq!(listed.lines().count(), report.lost.len());
    let spool = RocksSpool::open(&paths(&fresh.path().join("spool"))).unwrap();
    let salvaged = spool.enumerate().unwrap();
    assert_eq!(salvaged.len(), report.messages);
    assert!(salvaged.iter().all(|m| ids.contains(&m.id) && !report.lost.contains(&m.id)));
    let body = spool.load_data(salvaged[0].id).await.unwrap();
    assert!(body.ends_with(b"yyy\r\n"), "bodies come along");
}

#[tokio::test]
async fn a_damaged_sst_is_refused_then_rebuilt_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    spool_of_60(dir.path(), true).await;
    let sst = file_with_ext(dir.path(), "sst");
    let size = std::fs::metadata(&sst).unwrap().len() as usize;
    scribble(&sst, size / 3, 256);

    // RocksDB may only find the damage when it reads the block.
    let refused = match RocksSpool::open(&paths(dir.path())) {
        Err(e) => {
            assert!(matches!(e, SpoolError::Damaged { .. } | SpoolError::Storage(_)), "{e}");
            true
        }
        Ok(spool) => spool.enumerate().is_err(),
    };
    assert!(refused, "a damaged SST never reads as a smaller, whole spool");

    let fresh = tempfile::tempdir().unwrap();
    let quarantine = tempfile::tempdir().unwrap();
    let report = repair(&paths(dir.path()), &paths(&fresh.path().join("spool")), quarantine.path()).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    let spool = RocksSpool::open(&paths(&fresh.path().join("spool"))).unwrap();
    assert_eq!(spool.enumerate().unwrap().len(), report.messages, "the fresh spool opens and holds what was salvaged");
}

#[tokio::test]
async fn a_clean_spool_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    spool_of_60(dir.path(), false).await;
    let report = check(&paths(dir.path())).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages, 60);
    let spool = RocksSpool::open(&paths(dir.path())).unwrap();
    assert_eq!(spool.enumerate().unwrap().len(), 60);
    assert_eq!(spool.unreadable(), 0, "no false alarms from the WAL scan");
}
