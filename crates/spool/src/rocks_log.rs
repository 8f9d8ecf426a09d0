//! RocksDB settings the crate cannot reach, set through cpp/logger.cc:
//! the diagnostics, forwarded to Petrel's log instead of a LOG file
//! on the spool's disk (cpp/logger.cc says why: on a full disk that file
//! is what aborts librocksdb 7.8).

// FFI to the C++ shim: the only way to reach these RocksDB settings.
#![allow(unsafe_code)]

use rocksdb::Options;
use std::ffi::c_void;

unsafe extern "C" {
    fn petrel_rocksdb_forward_logs(options: *mut c_void, level: i32);
    fn petrel_rocksdb_forwards_logs(options: *mut c_void) -> i32;
    fn petrel_rocksdb_avoid_flush_during_recovery(options: *mut c_void);
}

/// RocksDB's `InfoLogLevel::WARN_LEVEL`: warnings and errors only.
const WARN_LEVEL: i32 = 2;

/// Called by the shim for each RocksDB log line at or above the level.
#[unsafe(no_mangle)]
extern "C" fn petrel_rocksdb_log(level: i32, message: *const u8, len: usize) {
    // SAFETY: the shim passes a buffer it owns for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(message, len) };
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    match level {
        ..=1 => tracing::debug!(target: "rocksdb", "{text}"),
        2 => tracing::warn!(target: "rocksdb", "{text}"),
        _ => tracing::error!(target: "rocksdb", "{text}"),
    }
}

const WORDS: usize = size_of::<Options>() / size_of::<usize>();
const _: () = assert!(size_of::<Options>().is_multiple_of(size_of::<usize>()));

/// A fresh `Options` whose every byte is initialized. `Options` holds the
/// handle and a few `Option`s of reference-counted pointers; a `None` of the
/// nested `Option` (the block-based table settings) leaves its payload word
/// uninitialized, which an optimized build fills with stack garbage. Setting
/// the block-based table factory to its defaults (what RocksDB uses anyway)
/// makes that word defined.
fn defined() -> Options {
    let mut options = Options::default();
    options.set_block_based_table_factory(&rocksdb::BlockBasedOptions::default());
    options
}

fn words(options: &Options) -> [usize; WORDS] {
    // SAFETY: only called on values from `defined`, whose bytes are all
    // initialized; nothing is dereferenced.
    unsafe { std::ptr::read_unaligned(options as *const Options as *const [usize; WORDS]) }
}

/// The C handle inside `options`. The crate keeps it private, so find the
/// one word in which two fresh `Options` differ: each owns its own handle,
/// while everything else in a default `Options` is equal.
fn raw_handle(options: &Options) -> Option<*mut c_void> {
    let (a, b) = (defined(), defined());
    let (wa, wb) = (words(&a), words(&b));
    let differing: Vec<usize> = (0..WORDS).filter(|&i| wa[i] != wb[i]).collect();
    let [index] = differing[..] else { return None };
    // SAFETY: `index` is the handle's word, which every `Options` initializes;
    // only that word is read.
    let handle = unsafe { std::ptr::read_unaligned((options as *const Options as *const usize).add(index)) };
    let handle = handle as *mut c_void;
    (!handle.is_null() && handle.align_offset(align_of::<usize>()) == 0).then_some(handle)
}

/// Make RocksDB log through Petrel. Panics if the options handle cannot be
/// found: opening a spool whose diagnostics could abort the process on a
/// full disk is worse than not starting.
pub(crate) fn forward_logs(options: &mut Options) {
    let handle = raw_handle(options).expect("cannot find the RocksDB options handle to install the logger");
    // SAFETY: `handle` is the live `rocksdb_options_t` owned by `options`.
    unsafe {
        petrel_rocksdb_forward_logs(handle, WARN_LEVEL);
        assert_eq!(petrel_rocksdb_forwards_logs(handle), 1, "RocksDB logger not installed");
    }
}

/// Replay the WAL at open without flushing it to new SST files.
pub(crate) fn avoid_flush_during_recovery(options: &mut Options) {
    let handle = raw_handle(options).expect("cannot find the RocksDB options handle");
    // SAFETY: as in `forward_logs`.
    unsafe { petrel_rocksdb_avoid_flush_during_recovery(handle) }
}
