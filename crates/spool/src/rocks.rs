//! RocksDB spool with group commit.
//!
//! All writes go through one writer thread. It takes every request waiting in
//! its channel, applies them as one batch and syncs once, then answers them
//! all: under load, concurrent receptions share one fsync instead of queuing
//! behind one each. Meta and data may live in one database (one atomic batch)
//! or two (KumoMTA's layout: data is written and synced before meta, so a
//! crash can leave only orphan bodies, which the next start removes).
//!
//! A failed write (disk full, I/O error) leaves RocksDB refusing every later
//! write until it is reopened, so the writer reopens it at once, and then
//! every second, probing with a small synced write, until writes work
//! again. Reopening replays the WAL, so nothing acknowledged is lost; while
//! it is closed, reads and writes fail as transient errors.

use crate::space::SpoolReserves;
use crate::{Spool, SpoolError};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use petrel_message::{Message, SpoolId};
use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, IteratorMode, Options, WriteBatch, WriteOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) const META_CF: &str = "meta";
pub(crate) const DATA_CF: &str = "data";
/// Most requests folded into one synced batch.
const MAX_GROUP: usize = 4096;
/// How often free space is measured while no writes come in.
const SPACE_CHECK: Duration = Duration::from_millis(100);
/// How often a database a failed write closed is tried again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// Written to the default column family to learn whether writes work again.
const PROBE_KEY: &[u8] = b"petrel-write-probe";

/// Directories of the meta and data spools (`kumo.define_spool`); they may
/// be the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolPaths {
    /// The directory of message metadata.
    pub meta: PathBuf,
    /// The directory of message bodies.
    pub data: PathBuf,
}

enum Op {
    Put(SpoolId, Vec<u8>, Option<Arc<[u8]>>),
    Delete(SpoolId),
}

struct Request {
    ops: Vec<Op>,
    /// A reception: the caller needs the write on disk before it is
    /// answered, and it is refused while the free-space reserve is short.
    durable: bool,
    /// `None`: nobody waits (a removal after delivery); a failure is logged.
    done: Option<oneshot::Sender<Result<(), SpoolError>>>,
}

/// The open databases; `data` is `None` when meta and data share one.
pub(crate) struct Dbs {
    pub(crate) meta: DB,
    data: Option<DB>,
}

impl Dbs {
    pub(crate) fn data(&self) -> &DB {
        self.data.as_ref().unwrap_or(&self.meta)
    }

    fn open(paths: &SpoolPaths) -> Result<Self, SpoolError> {
        let meta = open_db(&paths.meta)?;
        let data = if paths.data == paths.meta { None } else { Some(open_db(&paths.data)?) };
        Ok(Self { meta, data })
    }
}

/// What the spool reports through [`Spool::is_healthy`].
#[derive(Default)]
struct Health {
    /// A write failed and no write has succeeded since: the database is
    /// reopened and probed with a small synced write until one does.
    failing: AtomicBool,
    /// Free space or inodes are below the reserve.
    short: AtomicBool,
}

/// The spool on RocksDB: a message is durable once its write is synced.
pub struct RocksSpool {
    dbs: Arc<ArcSwapOption<Dbs>>,
    paths: SpoolPaths,
    unreadable: std::sync::atomic::AtomicUsize,
    health: Arc<Health>,
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

/// While a failed write has the database closed for reopening.
fn reopening() -> SpoolError {
    SpoolError::Storage("the spool is being reopened after a write error".into())
}

fn storage(e: rocksdb::Error) -> SpoolError {
    SpoolError::Storage(e.into_string())
}

/// Options every spool database is opened with.
pub(crate) fn db_options(recovery: DBRecoveryMode) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    crate::rocks_log::forward_logs(&mut opts);
    // A torn record at the end of the WAL is what an OS crash leaves of
    // writes that were never synced (so never acknowledged): skip it. Any
    // other damage stops the open with an error instead of dropping every
    // record after it; `petrel spool repair` salvages such a spool.
    opts.set_wal_recovery_mode(recovery);
    // Replaying the WAL must not need disk space, so a spool reopened on a
    // nearly full disk can still take the removals that free it.
    crate::rocks_log::avoid_flush_during_recovery(&mut opts);
    opts
}

/// The process holding RocksDB's lock on the database at `path`, if
/// another one does (RocksDB takes an fcntl write lock on `LOCK`).
#[allow(unsafe_code)] // fcntl(F_GETLK): asks who holds RocksDB's lock
fn lock_holder(path: &Path) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path.join("LOCK")).ok()?;
    // SAFETY: a zeroed flock is a valid argument; F_GETLK only fills it in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `file` is open for the duration of the call.
    let ok = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } == 0;
    (ok && lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

fn open_db(path: &Path) -> Result<DB, SpoolError> {
    std::fs::create_dir_all(path).map_err(|e| SpoolError::Storage(format!("{}: {e}", path.display())))?;
    if let Some(pid) = lock_holder(path) {
        return Err(SpoolError::InUse { path: path.to_path_buf(), pid });
    }
    let opts = db_options(DBRecoveryMode::TolerateCorruptedTailRecords);
    let cfs = [META_CF, DATA_CF].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| match e.kind() {
        rocksdb::ErrorKind::Corruption => SpoolError::Damaged { path: path.to_path_buf(), reason: e.into_string() },
        _ => SpoolError::Storage(format!("{}: {}", path.display(), e.into_string())),
    })
}

impl RocksSpool {
    /// Open with KumoMTA's default reserve (10 % of space and inodes free).
    pub fn open(paths: &SpoolPaths) -> Result<Self, SpoolError> {
        Self::open_with(paths, SpoolReserves::default())
    }

    /// Open (or create) the spool with these free-space reserves.
    pub fn open_with(paths: &SpoolPaths, reserve: SpoolReserves) -> Result<Self, SpoolError> {
        let dbs = Arc::new(ArcSwapOption::from_pointee(Dbs::open(paths)?));
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dbs: dbs.clone(),
            health: health.clone(),
            paths: paths.clone(),
            reserve,
            last_reopen: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("petrel-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| SpoolError::Storage(format!("cannot start the spool writer: {e}")))?;
        Ok(Self {
            dbs,
            paths: paths.clone(),
            unreadable: Default::default(),
            health,
            writer: Some(tx),
            writer_thread: Some(thread),
        })
    }

    async fn submit(&self, ops: Vec<Op>, durable: bool) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(SpoolError::Closed)?;
        writer.send(Request { ops, durable, done: Some(done) }).map_err(|_| SpoolError::Closed)?;
        wait.await.map_err(|_| SpoolError::Closed)?
    }

    /// Hand `ops` to the writer and go on.
    fn submit_later(&self, ops: Vec<Op>) {
        let sent = self.writer.as_ref().map(|w| w.send(Request { ops, durable: false, done: None }));
        if !matches!(sent, Some(Ok(()))) {
            tracing::error!("the spool is closed; a finished message stays spooled and is delivered again at start");
        }
    }

    /// Write the memtables out to SST files, so the WAL they came from can
    /// be dropped.
    pub fn flush(&self) -> Result<(), SpoolError> {
        let dbs = self.dbs()?;
        for (db, cf) in [(&dbs.meta, META_CF), (&dbs.meta, DATA_CF), (dbs.data(), DATA_CF)] {
            db.flush_cf(db.cf_handle(cf).expect("cf")).map_err(storage)?;
        }
        Ok(())
    }

    fn dbs(&self) -> Result<Arc<Dbs>, SpoolError> {
        self.dbs.load_full().ok_or_else(reopening)
    }
}

/// The writer thread's state.
struct Writer {
    dbs: Arc<ArcSwapOption<Dbs>>,
    health: Arc<Health>,
    paths: SpoolPaths,
    reserve: SpoolReserves,
    last_reopen: Instant,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        let unsynced = WriteOptions::default();
        loop {
            let first = match rx.recv_timeout(SPACE_CHECK) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            self.maintain();
            let Some(first) = first else {
                self.check_space();
                continue;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            if group.iter().any(|r| r.durable) {
                self.check_space();
            }
            if self.health.short.load(Ordering::Relaxed) {
                // Receptions wait for space; removals and updates go on, so
                // deliveries keep freeing it.
                let (refused, rest): (Vec<_>, Vec<_>) = group.into_iter().partition(|r| r.durable);
                for request in refused {
                    answer(request, Err(SpoolError::NoSpace));
                }
                group = rest;
                if group.is_empty() {
                    continue;
                }
            }
            // Receptions need their fsync; removals and schedule updates ride
            // along, or go unsynced: a process crash keeps them (they reached
            // the OS), and only an OS crash could undo them, which costs at
            // most a duplicate delivery, never a lost message.
            let options = if group.iter().any(|r| r.durable) { &synced } else { &unsynced };
            let result = match self.dbs.load_full() {
                Some(dbs) => apply(&group, &dbs, options).map_err(SpoolError::Storage),
                None => Err(reopening()),
            };
            match &result {
                Ok(()) => self.recovered(),
                Err(e) => self.failed(e),
            }
            for request in group {
                answer(request, result.clone());
            }
        }
    }

    /// Reopen a database a failed write closed, and probe it.
    fn maintain(&mut self) {
        if self.health.failing.load(Ordering::Relaxed) && self.last_reopen.elapsed() >= REOPEN_EVERY {
            self.reopen();
            if self.probe() {
                self.recovered();
            }
        }
    }

    /// Measure free space against the reserve. Cheap (one statvfs per
    /// directory), so it runs before every group of receptions: a burst
    /// cannot run past the reserve between two checks.
    fn check_space(&mut self) {
        let data = (self.paths.data != self.paths.meta).then_some((&self.paths.data, &self.reserve.data));
        let dirs = std::iter::once((&self.paths.meta, &self.reserve.meta)).chain(data);
        let short = dirs.into_iter().find_map(|(path, reserve)| reserve.shortfall(path));
        let was_short = self.health.short.swap(short.is_some(), Ordering::Relaxed);
        match (short, was_short) {
            (Some(why), false) => tracing::error!(%why, "spool below its free-space reserve; new mail is deferred"),
            (None, true) => tracing::info!("spool free space is back above its reserve; accepting mail again"),
            _ => {}
        }
    }

    /// The first failure reopens at once; while failing, `maintain` tries
    /// again once a second, so a stream of refused writes never turns into
    /// a stream of reopens.
    fn failed(&mut self, error: &SpoolError) {
        if !self.health.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, "spool write failed; new mail is deferred until the spool writes again");
            self.reopen();
        }
    }

    fn recovered(&self) {
        if self.health.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the spool writes again; accepting mail");
        }
    }

    /// A small synced write outside the message column families: can the
    /// spool write again?
    fn probe(&self) -> bool {
        let Some(dbs) = self.dbs.load_full() else { return false };
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        [Some(&dbs.meta), dbs.data.as_ref()]
            .into_iter()
            .flatten()
            .all(|db| db.put_opt(PROBE_KEY, b"1", &synced).is_ok())
    }

    /// Close the databases (once readers let go) and open them again.
    fn reopen(&mut self) {
        self.last_reopen = Instant::now();
        if let Some(mut old) = self.dbs.swap(None) {
            // Readers hold the handle for one read at a time.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(dbs) => {
                        drop(dbs);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(still_shared) => {
                        tracing::warn!("spool readers did not let go; reopening later");
                        self.dbs.store(Some(still_shared));
                        return;
                    }
                }
            }
        }
        match Dbs::open(&self.paths) {
            Ok(dbs) => self.dbs.store(Some(Arc::new(dbs))),
            Err(e) => tracing::warn!(error = %e, "cannot reopen the spool yet; trying again"),
        }
    }
}

/// Tell the caller how its write went; log it when nobody waits.
fn answer(request: Request, result: Result<(), SpoolError>) {
    match request.done {
        Some(done) => {
            let _ = done.send(result);
        }
        None => {
            if let Err(error) = result {
                let removals = request.ops.len();
                tracing::error!(%error, removals, "finished messages could not be removed; they are delivered again at start");
            }
        }
    }
}

fn apply(group: &[Request], dbs: &Dbs, sync: &WriteOptions) -> Result<(), String> {
    let (meta, data) = (&dbs.meta, dbs.data());
    let (meta_cf, data_cf) = (meta.cf_handle(META_CF).expect("meta cf"), data.cf_handle(DATA_CF).expect("data cf"));
    let mut meta_batch = WriteBatch::default();
    // One database: data goes into the meta batch for a single atomic write.
    let mut data_batch = WriteBatch::default();
    let same = dbs.data.is_none();
    for op in group.iter().flat_map(|r| &r.ops) {
        let body_batch = if same { &mut meta_batch } else { &mut data_batch };
        match op {
            Op::Put(id, _, Some(body)) => body_batch.put_cf(data_cf, id.as_bytes(), body),
            Op::Delete(id) => body_batch.delete_cf(data_cf, id.as_bytes()),
            Op::Put(_, _, None) => {}
        }
        match op {
            Op::Put(id, record, _) => meta_batch.put_cf(meta_cf, id.as_bytes(), record),
            Op::Delete(id) => meta_batch.delete_cf(meta_cf, id.as_bytes()),
        }
    }
    if !data_batch.is_empty() {
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

    fn remove_later(&self, id: SpoolId) {
        self.submit_later(vec![Op::Delete(id)]);
    }

    async fn load_meta(&self, id: SpoolId) -> Result<Message, SpoolError> {
        let dbs = self.dbs()?;
        tokio::task::spawn_blocking(move || {
            let cf = dbs.meta.cf_handle(META_CF).expect("meta cf");
            match dbs.meta.get_pinned_cf(cf, id.as_bytes()).map_err(storage)? {
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
        let dbs = self.dbs()?;
        let cf = dbs.data().cf_handle(DATA_CF).expect("data cf");
        match dbs.data().get_pinned_cf(cf, id.as_bytes()).map_err(storage)? {
            Some(body) => Ok(Arc::from(&body[..])),
            None => Err(SpoolError::NotFound(id)),
        }
    }

    fn is_healthy(&self) -> bool {
        !self.health.failing.load(Ordering::Relaxed) && !self.health.short.load(Ordering::Relaxed)
    }

    fn enumerate(&self) -> Result<Vec<Message>, SpoolError> {
        let dbs = self.dbs()?;
        let meta_cf = dbs.meta.cf_handle(META_CF).expect("meta cf");
        let data_cf = dbs.data().cf_handle(DATA_CF).expect("data cf");
        let mut keep = HashSet::new();
        let mut messages = Vec::new();
        let mut unreadable = 0;
        for item in dbs.meta.iterator_cf(meta_cf, IteratorMode::Start) {
            let (key, value) = item.map_err(storage)?;
            let mut message: Message = match serde_json::from_slice(&value) {
                Ok(m) => m,
                Err(e) => {
                    // Left in place (with its body) for `petrel spool repair`.
                    tracing::error!(key = %crate::wal_scan::key_name(&key), error = %e, "unreadable spool record");
                    unreadable += 1;
                    keep.insert(key);
                    continue;
                }
            };
            if dbs.data().get_pinned_cf(data_cf, &key).map_err(storage)?.is_none() {
                // Only a removal interrupted between the two databases does this.
                tracing::warn!(id = %message.id, "spooled meta has no body; dropping it");
                continue;
            }
            message.data = None;
            keep.insert(key);
            messages.push(message);
        }
        let found: HashSet<SpoolId> = messages.iter().map(|m| m.id).collect();
        let lost = crate::wal_scan::lost_from_wal(&self.paths, &found);
        if !lost.is_empty() {
            let ids: Vec<String> = lost.iter().take(20).map(|id| id.to_string()).collect();
            tracing::error!(
                count = lost.len(),
                ids = %ids.join(","),
                "the WAL names spooled messages whose records cannot be read; see petrel spool check"
            );
            unreadable += lost.len();
        }
        self.unreadable.store(unreadable, Ordering::Relaxed);
        remove_unpaired(&dbs, &keep)?;
        Ok(messages)
    }

    fn unreadable(&self) -> usize {
        self.unreadable.load(Ordering::Relaxed)
    }
}

/// Delete meta without body and bodies without meta (never acknowledged).
fn remove_unpaired(dbs: &Dbs, keep: &HashSet<Box<[u8]>>) -> Result<(), SpoolError> {
    for (db, cf_name) in [(&dbs.meta, META_CF), (dbs.data(), DATA_CF)] {
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
