//! RocksDB spool with group commit.
//!
//! All writes go through one writer thread. It takes every request waiting in
//! its channel, applies them as one batch and syncs once, then answers them
//! all: under load, concurrent receptions share one fsync instead of queuing
//! behind one each. Meta and data may live in one database (one atomic batch)
//! or two (KumoMTA's layout: data is written and synced before meta, so a
//! crash can leave only orphan bodies, which the next start removes).

use crate::{Spool, SpoolError};
use async_trait::async_trait;
use petrel_message::{Message, SpoolId};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

const META_CF: &str = "meta";
const DATA_CF: &str = "data";
/// Most requests folded into one synced batch.
const MAX_GROUP: usize = 4096;

/// Directories of the meta and data spools (`kumo.define_spool`); they may
/// be the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolPaths {
    pub meta: PathBuf,
    pub data: PathBuf,
}

enum Op {
    Put(SpoolId, Vec<u8>, Option<Arc<[u8]>>),
    Delete(SpoolId),
}

struct Request {
    ops: Vec<Op>,
    /// Whether the caller needs the write on disk before it is answered.
    durable: bool,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

pub struct RocksSpool {
    meta: Arc<DB>,
    data: Arc<DB>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    writer: Option<mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RocksSpool {
    /// Close the channel and wait for the writer, so that the databases are
    /// closed (and their locks released) when the spool is gone.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn storage(e: rocksdb::Error) -> SpoolError {
    SpoolError::Storage(e.into_string())
}

fn open(path: &Path) -> Result<Arc<DB>, SpoolError> {
    std::fs::create_dir_all(path).map_err(|e| SpoolError::Storage(format!("{}: {e}", path.display())))?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [META_CF, DATA_CF].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&opts, path, cfs)
        .map(Arc::new)
        .map_err(|e| SpoolError::Storage(format!("{}: {}", path.display(), e.into_string())))
}

impl RocksSpool {
    pub fn open(paths: &SpoolPaths) -> Result<Self, SpoolError> {
        let meta = open(&paths.meta)?;
        let data = if paths.data == paths.meta { meta.clone() } else { open(&paths.data)? };
        let (tx, rx) = mpsc::channel();
        let (m, d) = (meta.clone(), data.clone());
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let health = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("petrel-spool".into())
            .spawn(move || write_loop(rx, m, d, &health))
            .map_err(|e| SpoolError::Storage(format!("cannot start the spool writer: {e}")))?;
        Ok(Self { meta, data, healthy, writer: Some(tx), writer_thread: Some(thread) })
    }

    async fn submit(&self, ops: Vec<Op>, durable: bool) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(SpoolError::Closed)?;
        writer.send(Request { ops, durable, done }).map_err(|_| SpoolError::Closed)?;
        wait.await.map_err(|_| SpoolError::Closed)?
    }
}

fn write_loop(rx: mpsc::Receiver<Request>, meta: Arc<DB>, data: Arc<DB>, healthy: &std::sync::atomic::AtomicBool) {
    let same = Arc::ptr_eq(&meta, &data);
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    let unsynced = WriteOptions::default();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        // Receptions need their fsync; removals and schedule updates ride
        // along, or go unsynced: a process crash keeps them (they reached
        // the OS), and only an OS crash could undo them, which costs at most
        // a duplicate delivery, never a lost message.
        let options = if group.iter().any(|r| r.durable) { &synced } else { &unsynced };
        let result = apply(&group, &meta, &data, same, options);
        healthy.store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "spool write failed; new mail is deferred");
        }
        for request in group {
            let _ = request.done.send(result.clone().map_err(SpoolError::Storage));
        }
    }
}

fn apply(group: &[Request], meta: &DB, data: &DB, same: bool, sync: &WriteOptions) -> Result<(), String> {
    let (meta_cf, data_cf) = (meta.cf_handle(META_CF).expect("meta cf"), data.cf_handle(DATA_CF).expect("data cf"));
    let mut meta_batch = WriteBatch::default();
    let mut data_batch = WriteBatch::default();
    for op in group.iter().flat_map(|r| &r.ops) {
        match op {
            Op::Put(id, record, body) => {
                meta_batch.put_cf(meta_cf, id.as_bytes(), record);
                if let Some(body) = body {
                    data_batch.put_cf(data_cf, id.as_bytes(), body);
                }
            }
            Op::Delete(id) => {
                meta_batch.delete_cf(meta_cf, id.as_bytes());
                data_batch.delete_cf(data_cf, id.as_bytes());
            }
        }
    }
    if same {
        // One database: fold data into the meta batch for a single atomic write.
        for op in group.iter().flat_map(|r| &r.ops) {
            match op {
                Op::Put(id, _, Some(body)) => meta_batch.put_cf(data_cf, id.as_bytes(), body),
                Op::Delete(id) => meta_batch.delete_cf(data_cf, id.as_bytes()),
                Op::Put(_, _, None) => {}
            }
        }
    } else if !data_batch.is_empty() {
        data.write_opt(data_batch, sync).map_err(|e| e.into_string())?;
    }
    meta.write_opt(meta_batch, sync).map_err(|e| e.into_string())
}

fn encode(message: &Message) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(message).map_err(|e| SpoolError::Corrupt { key: message.id.to_string(), reason: e.to_string() })
}

#[async_trait]
impl Spool for RocksSpool {
    async fn store(&self, messages: &[Message]) -> Result<(), SpoolError> {
        let mut ops = Vec::with_capacity(messages.len());
        for m in messages {
            let body = m.data.clone().ok_or_else(|| SpoolError::Corrupt {
                key: m.id.to_string(),
                reason: "message has no body to store".into(),
            })?;
            ops.push(Op::Put(m.id, encode(m)?, Some(body)));
        }
        self.submit(ops, true).await
    }

    async fn update_meta(&self, message: &Message) -> Result<(), SpoolError> {
        self.submit(vec![Op::Put(message.id, encode(message)?, None)], false).await
    }

    async fn remove(&self, id: SpoolId) -> Result<(), SpoolError> {
        self.submit(vec![Op::Delete(id)], false).await
    }

    async fn load_meta(&self, id: SpoolId) -> Result<Message, SpoolError> {
        let db = self.meta.clone();
        tokio::task::spawn_blocking(move || {
            let cf = db.cf_handle(META_CF).expect("meta cf");
            match db.get_pinned_cf(cf, id.as_bytes()).map_err(storage)? {
                Some(record) => serde_json::from_slice(&record)
                    .map_err(|e| SpoolError::Corrupt { key: id.to_string(), reason: e.to_string() }),
                None => Err(SpoolError::NotFound(id)),
            }
        })
        .await
        .map_err(|e| SpoolError::Storage(format!("spool read task failed: {e}")))?
    }

    async fn load_data(&self, id: SpoolId) -> Result<Arc<[u8]>, SpoolError> {
        // Read inline: a body about to be delivered was usually written
        // moments ago and sits in the memtable or block cache, so handing
        // the read to a blocking thread would cost more than the read.
        let cf = self.data.cf_handle(DATA_CF).expect("data cf");
        match self.data.get_pinned_cf(cf, id.as_bytes()).map_err(storage)? {
            Some(body) => Ok(Arc::from(&body[..])),
            None => Err(SpoolError::NotFound(id)),
        }
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn enumerate(&self) -> Result<Vec<Message>, SpoolError> {
        let meta_cf = self.meta.cf_handle(META_CF).expect("meta cf");
        let data_cf = self.data.cf_handle(DATA_CF).expect("data cf");
        let mut with_body = HashSet::new();
        let mut messages = Vec::new();
        for item in self.meta.iterator_cf(meta_cf, IteratorMode::Start) {
            let (key, value) = item.map_err(storage)?;
            let mut message: Message = serde_json::from_slice(&value)
                .map_err(|e| SpoolError::Corrupt { key: format!("{key:02x?}"), reason: e.to_string() })?;
            if self.data.get_pinned_cf(data_cf, &key).map_err(storage)?.is_none() {
                // Only a removal interrupted between the two databases does this.
                tracing::warn!(id = %message.id, "spooled meta has no body; dropping it");
                continue;
            }
            message.data = None;
            with_body.insert(key);
            messages.push(message);
        }
        self.remove_unpaired(&with_body)?;
        Ok(messages)
    }
}

impl RocksSpool {
    /// Delete meta without body and bodies without meta (never acknowledged).
    fn remove_unpaired(&self, keep: &HashSet<Box<[u8]>>) -> Result<(), SpoolError> {
        for (db, cf_name) in [(&self.meta, META_CF), (&self.data, DATA_CF)] {
            let cf = db.cf_handle(cf_name).expect("cf");
            let mut batch = WriteBatch::default();
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (key, _) = item.map_err(storage)?;
                if !keep.contains(&key) {
                    batch.delete_cf(cf, &key);
                }
            }
            if !batch.is_empty() {
                db.write(batch).map_err(storage)?;
            }
        }
        Ok(())
    }
}
