//! Reading message ids out of the raw bytes of WAL files, damaged or not:
//! how salvage and start-up name the messages whose records are gone.

use crate::SpoolPaths;
use petrel_message::SpoolId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A record's key as an id where it is one, else as hex.
pub(crate) fn key_name(key: &[u8]) -> String {
    hex(key)
}

/// Ids the WAL of `paths` last stored (and never removed) that are not in
/// `found`: records a tolerated WAL tail or a skipped record took away.
pub(crate) fn lost_from_wal(paths: &SpoolPaths, found: &std::collections::HashSet<SpoolId>) -> BTreeSet<SpoolId> {
    let seen = scan_wal_dir(&paths.meta);
    seen.into_iter().filter(|(id, live)| *live && !found.contains(id)).map(|(id, _)| id).collect()
}

fn hex(key: &[u8]) -> String {
    match SpoolId::from_bytes(key) {
        Ok(id) => id.to_string(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Ids in the raw bytes of the WAL files of `dir`, with whether the last
/// thing the WAL says of each is a store (true) or a removal (false).
fn scan_wal_dir(dir: &Path) -> BTreeMap<SpoolId, bool> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    // WAL file numbers grow, so name order is write order.
    files.sort();
    let mut seen = BTreeMap::new();
    for file in files {
        if let Ok(bytes) = std::fs::read(&file) {
            scan_wal_bytes(&bytes, &mut seen);
        }
    }
    seen
}

/// WriteBatch entries for a column family other than the default one are
/// `tag, cf id (varint), key length (varint), key[, value]`: tag 5 puts,
/// tag 4 deletes. Our keys are 16-byte UUIDv7s and meta values are JSON
/// objects, so `5, id, 0x10, <UUIDv7>, <length>, '{'` marks a stored meta
/// record and `4, id, 0x10, <UUIDv7>` a removal, even inside damaged bytes.
fn scan_wal_bytes(bytes: &[u8], seen: &mut BTreeMap<SpoolId, bool>) {
    let mut i = 0;
    while i + 19 <= bytes.len() {
        let tag = bytes[i];
        if (tag == 4 || tag == 5) && bytes[i + 1] < 8 && bytes[i + 2] == 0x10 {
            let key = &bytes[i + 3..i + 19];
            let version7 = key[6] >> 4 == 7 && key[8] >> 6 == 0b10;
            let meta_value = || {
                // Skip the value's varint length, then expect '{'.
                let rest = &bytes[i + 19..];
                let len_bytes = rest.iter().take(5).take_while(|b| **b & 0x80 != 0).count() + 1;
                rest.get(len_bytes) == Some(&b'{')
            };
            if version7
                && (tag == 4 || meta_value())
                && let Ok(id) = SpoolId::from_bytes(key)
            {
                seen.insert(id, tag == 5);
                i += 19;
                continue;
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_scan_follows_puts_and_deletes() {
        let id = SpoolId::new();
        let mut bytes = vec![0xff, 0x00];
        bytes.extend([5, 1, 0x10]);
        bytes.extend(id.as_bytes());
        bytes.extend([3, b'{', b'}', b'x']);
        let mut seen = BTreeMap::new();
        scan_wal_bytes(&bytes, &mut seen);
        assert_eq!(seen.get(&id), Some(&true));
        bytes.extend([4, 1, 0x10]);
        bytes.extend(id.as_bytes());
        scan_wal_bytes(&bytes, &mut seen);
        assert_eq!(seen.get(&id), Some(&false), "removed later");
    }
}
