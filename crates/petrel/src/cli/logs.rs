//! `petrel logs tail`: print the JSON log records of a log directory,
//! decompressing segments, optionally following new records.

use anyhow::{Context, Result};
use petrel_telemetry::{segment_lines, segments};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn tail(dir: &Path, lines: usize, follow: bool) -> Result<()> {
    // Per segment: its size when last read and the lines printed from it,
    // so following re-reads only the segment being written (and new ones).
    let mut seen: HashMap<PathBuf, (u64, usize)> = HashMap::new();
    let mut first = true;
    loop {
        let files = segments(dir).with_context(|| format!("cannot read log directory {}", dir.display()))?;
        let mut fresh = Vec::new();
        for file in files {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if seen.get(&file).is_some_and(|(read, _)| *read == size) {
                continue;
            }
            let all = segment_lines(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let done = seen.entry(file).or_insert((0, 0));
            fresh.extend(all.iter().skip(done.1).cloned());
            *done = (size, all.len());
        }
        let skip = if first { fresh.len().saturating_sub(lines) } else { 0 };
        for line in fresh.into_iter().skip(skip) {
            println!("{line}");
        }
        first = false;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
