//! `petrel spool check` and `petrel spool repair`: what can be read from a
//! damaged spool, and a fresh spool built from it.
//!
//! `serve` refuses a spool RocksDB reports as corrupt (anything but a torn
//! WAL tail), so nothing is dropped without an operator knowing. Salvage
//! then opens the spool read-only skipping damaged WAL records; if even that
//! fails (a damaged SST or MANIFEST) it runs RocksDB's repair on a copy.
//! Every record is sorted into a message (meta and body both readable),
//! which goes into the fresh spool, or a quarantined record, written as a
//! file for a person to look at. The WAL files are also scanned byte by
//! byte for message ids, so ids whose records sat in the damaged part are
//! named even though their records could not be read.

use crate::rocks::{DATA_CF, META_CF, db_options};
use crate::wal_scan::{key_name, lost_from_wal};
use crate::{RocksSpool, Spool, SpoolError, SpoolPaths, SpoolReserves, StorageReserve};
use petrel_message::{Message, SpoolId};
use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, IteratorMode, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What salvage found.
#[derive(Debug, Default)]
pub struct SalvageReport {
    /// Messages whose meta and body were both read.
    pub messages: usize,
    /// Records that could not be used, with why.
    pub quarantined: Vec<(String, String)>,
    /// Ids found in the WAL's bytes whose messages could not be read (and
    /// that were not removed later in the same WAL).
    pub lost: BTreeSet<SpoolId>,
    /// Damage reported while opening or reading.
    pub damage: Vec<String>,
    /// RocksDB's own repair had to run (a damaged SST or MANIFEST).
    pub rebuilt: bool,
}

impl SalvageReport {
    /// Nothing was lost, quarantined or found damaged.
    pub fn is_clean(&self) -> bool {
        self.quarantined.is_empty() && self.lost.is_empty() && self.damage.is_empty()
    }
}

/// What a read of the damaged spool produced.
struct Readable {
    messages: Vec<Message>,
    report: SalvageReport,
    /// Raw records that are kept for a person: (name, bytes).
    quarantine: Vec<(String, Vec<u8>)>,
}

/// Read what can be read; writes nothing to `paths`.
pub fn check(paths: &SpoolPaths) -> Result<SalvageReport, SpoolError> {
    read(paths).map(|r| r.report)
}

/// Salvage `paths` into a fresh spool at `into`, and quarantine what cannot
/// be used as files under `quarantine`. The damaged spool is left as it is.
pub async fn repair(paths: &SpoolPaths, into: &SpoolPaths, quarantine: &Path) -> Result<SalvageReport, SpoolError> {
    for dir in [&into.meta, &into.data] {
        if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(SpoolError::Storage(format!("{}: the new spool directory must be empty", dir.display())));
        }
    }
    let readable = read(paths)?;
    std::fs::create_dir_all(quarantine).map_err(|e| io(quarantine, e))?;
    for (name, bytes) in &readable.quarantine {
        let file = quarantine.join(name);
        std::fs::write(&file, bytes).map_err(|e| io(&file, e))?;
    }
    if !readable.report.lost.is_empty() {
        let list: String = readable.report.lost.iter().map(|id| format!("{id}\n")).collect();
        let file = quarantine.join("lost-ids.txt");
        std::fs::write(&file, list).map_err(|e| io(&file, e))?;
    }
    let fresh = RocksSpool::open_with(into, SpoolReserves::uniform(StorageReserve::none()))?;
    for chunk in readable.messages.chunks(256) {
        fresh.store(chunk).await?;
    }
    Ok(readable.report)
}

fn io(path: &Path, e: std::io::Error) -> SpoolError {
    SpoolError::Storage(format!("{}: {e}", path.display()))
}

fn read(paths: &SpoolPaths) -> Result<Readable, SpoolError> {
    let mut report = SalvageReport::default();
    let mut quarantine = Vec::new();
    let (meta_db, _meta_copy) = open_damaged(&paths.meta, &mut report)?;
    let separate = (paths.data != paths.meta).then(|| open_damaged(&paths.data, &mut report)).transpose()?;
    let data_db = separate.as_ref().map_or(&meta_db, |(db, _)| db);

    let metas = read_cf(&meta_db, META_CF, &mut report);
    let mut bodies = read_cf(data_db, DATA_CF, &mut report);
    let mut messages = Vec::new();
    for (key, record) in metas {
        let name = key_name(&key);
        let body = bodies.remove(&key);
        match (serde_json::from_slice::<Message>(&record), body) {
            (Ok(mut message), Some(body)) => {
                message.data = Some(body.into());
                messages.push(message);
            }
            (Ok(_), None) => {
                report.quarantined.push((name.clone(), "meta without a body".into()));
                quarantine.push((format!("{name}.meta.json"), record));
            }
            (Err(e), body) => {
                report.quarantined.push((name.clone(), format!("unreadable meta: {e}")));
                quarantine.push((format!("{name}.meta"), record));
                if let Some(body) = body {
                    quarantine.push((format!("{name}.eml"), body));
                }
            }
        }
    }
    for (key, body) in bodies {
        let name = key_name(&key);
        report.quarantined.push((name.clone(), "body without meta".into()));
        quarantine.push((format!("{name}.eml"), body));
    }
    let salvaged: std::collections::HashSet<SpoolId> = messages.iter().map(|m| m.id).collect();
    // Quarantined records are accounted for; only ids with no record are lost.
    let quarantined: BTreeSet<String> = report.quarantined.iter().map(|(name, _)| name.clone()).collect();
    report.lost =
        lost_from_wal(paths, &salvaged).into_iter().filter(|id| !quarantined.contains(&id.to_string())).collect();
    report.messages = messages.len();
    Ok(Readable { messages, report, quarantine })
}

/// Open read-only, skipping damaged WAL records; when that fails, repair a
/// copy and open the copy. The copy's temp dir lives as long as the handle.
fn open_damaged(path: &Path, report: &mut SalvageReport) -> Result<(DB, Option<tempfile::TempDir>), SpoolError> {
    if !path.join("CURRENT").exists() {
        return Err(SpoolError::Storage(format!("{}: no spool here (no CURRENT file)", path.display())));
    }
    let opts = db_options(DBRecoveryMode::SkipAnyCorruptedRecord);
    let cfs = || [META_CF, DATA_CF].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    match DB::open_cf_descriptors_read_only(&opts, path, cfs(), false) {
        Ok(db) => return Ok((db, None)),
        Err(e) => report.damage.push(format!("{}: {}", path.display(), e.into_string())),
    }
    let copy = tempfile::tempdir().map_err(|e| io(path, e))?;
    copy_dir(path, copy.path()).map_err(|e| io(path, e))?;
    DB::repair(&opts, copy.path()).map_err(|e| SpoolError::Damaged { path: path.into(), reason: e.into_string() })?;
    report.rebuilt = true;
    let db = DB::open_cf_descriptors_read_only(&opts, copy.path(), cfs(), false)
        .map_err(|e| SpoolError::Damaged { path: path.into(), reason: e.into_string() })?;
    Ok((db, Some(copy)))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Every readable record of one column family. A damaged block ends the
/// scan of that family; what came before it is kept.
fn read_cf(db: &DB, cf: &str, report: &mut SalvageReport) -> BTreeMap<Box<[u8]>, Vec<u8>> {
    let mut records = BTreeMap::new();
    let Some(handle) = db.cf_handle(cf) else {
        report.damage.push(format!("column family {cf} is missing"));
        return records;
    };
    for item in db.iterator_cf(handle, IteratorMode::Start) {
        match item {
            Ok((key, value)) => {
                records.insert(key, value.into_vec());
            }
            Err(e) => {
                report.damage.push(format!("reading {cf}: {}", e.into_string()));
                break;
            }
        }
    }
    records
}
