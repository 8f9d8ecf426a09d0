//! Appends log records to a JSON-lines file on a dedicated thread, so that
//! message paths only pay for a channel send, never for file I/O.

use crate::record::LogRecord;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Where and how to log (from `kumo.configure_local_logs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub log_dir: PathBuf,
}

/// Handle for emitting records. Cloning is cheap; the writer thread stops
/// (after writing everything sent) once every handle is dropped.
#[derive(Clone)]
pub struct Logger {
    tx: Option<mpsc::Sender<LogRecord>>,
}

impl Logger {
    /// A logger that drops records (no log directory configured).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Start a writer for a new file `<log_dir>/<start time>.jsonl`.
    pub fn start(config: &LogConfig) -> std::io::Result<(Self, JoinHandle<()>)> {
        std::fs::create_dir_all(&config.log_dir)?;
        let name = format!("{}.jsonl", chrono::Utc::now().format("%Y%m%d-%H%M%S%.6f"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.log_dir.join(name))?;
        let (tx, rx) = mpsc::channel::<LogRecord>();
        let handle = std::thread::Builder::new()
            .name("petrel-logs".into())
            .spawn(move || write_loop(rx, BufWriter::new(file)))?;
        Ok((Self { tx: Some(tx) }, handle))
    }

    pub fn log(&self, record: LogRecord) {
        if let Some(tx) = &self.tx {
            // The writer only exits once all senders are gone, so this holds.
            let _ = tx.send(record);
        }
    }
}

fn write_loop(rx: mpsc::Receiver<LogRecord>, mut out: BufWriter<std::fs::File>) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            let mut line = serde_json::to_vec(&record).expect("log records always serialize");
            line.push(b'\n');
            if let Err(e) = out.write_all(&line) {
                tracing::error!(error = %e, "cannot write log record");
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "cannot flush log file");
        }
    }
}

/// Every record in every log file under `dir`, oldest file first.
pub fn read_records(dir: &Path) -> std::io::Result<Vec<LogRecord>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        for line in std::io::BufReader::new(std::fs::File::open(&file)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))
            })?;
            records.push(record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RecordType, ResponseInfo};
    use petrel_message::{EnvelopeAddress, Message};
    use std::sync::Arc;

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (logger, handle) = Logger::start(&LogConfig {
            log_dir: dir.path().into(),
        })
        .unwrap();
        let msg = Message::new(
            EnvelopeAddress::parse("a@b.example").unwrap(),
            EnvelopeAddress::parse("c@d.example").unwrap(),
            Arc::from(&b"x\r\n"[..]),
        );
        let response = ResponseInfo {
            code: 250,
            enhanced_code: Some("2.0.0".into()),
            content: "ok".into(),
        };
        logger.log(LogRecord::for_message(RecordType::Reception, &msg, response));
        drop(logger);
        handle.join().unwrap();
        let records = read_records(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kind, RecordType::Reception);
        assert_eq!(records[0].queue, "d.example");
        let raw =
            std::fs::read_to_string(std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path()).unwrap();
        assert!(raw.contains("\"type\":\"Reception\""));
    }
}
