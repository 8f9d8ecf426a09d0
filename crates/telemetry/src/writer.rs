//! Appends log records to segment files on a dedicated thread, so message
//! paths only pay for a channel send, never for file I/O. Segments rotate by
//! size and age and are zstd-compressed unless the level is 0.

use crate::bounces::BounceWindow;
use crate::classify::BounceClassifier;
use crate::hooks::HookTap;
use crate::metrics::Metrics;
use crate::record::{LogRecord, RecordType, ResponseInfo};
use arc_swap::ArcSwapOption;
use petrel_message::{Message, first_header};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `kumo.configure_local_logs{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Where segments are written.
    pub log_dir: PathBuf,
    /// Start a new segment past this many uncompressed bytes.
    pub max_file_size: u64,
    /// Start a new segment after this long.
    pub max_segment_duration: Option<Duration>,
    /// zstd level; 0 writes plain JSON lines.
    pub compression_level: i32,
    /// Meta keys to keep in records; `None` keeps all.
    pub meta: Option<Vec<String>>,
    /// Headers to copy into records when the body is at hand.
    pub headers: Vec<String>,
}

impl LogConfig {
    /// zstd level 3 segments of at most 1 GB (KumoMTA's defaults), no age limit.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self {
            log_dir: log_dir.into(),
            max_file_size: 1_000_000_000,
            max_segment_duration: None,
            compression_level: 3,
            meta: None,
            headers: Vec::new(),
        }
    }
}

/// Handle for emitting records and counting them. Cloning is cheap; the
/// writer thread stops (after writing everything sent) once every handle
/// is dropped.
#[derive(Clone)]
pub struct Logger {
    tx: Option<mpsc::Sender<LogRecord>>,
    config: Option<Arc<LogConfig>>,
    metrics: Arc<Metrics>,
    classifier: Arc<ArcSwapOption<BounceClassifier>>,
    bounces: Arc<BounceWindow>,
    hooks: Arc<ArcSwapOption<HookTap>>,
    /// Where failures go for shaping automation.
    failures: Arc<ArcSwapOption<tokio::sync::mpsc::UnboundedSender<LogRecord>>>,
    /// Live SMTP transcripts for whoever watches.
    traces: Arc<crate::trace::TraceHub>,
}

impl Logger {
    /// A logger that writes nothing and counts into a private registry.
    pub fn disabled() -> Self {
        Self::counting(Arc::new(Metrics::new()))
    }

    /// A logger that only counts (no log directory configured).
    pub fn counting(metrics: Arc<Metrics>) -> Self {
        Self {
            tx: None,
            config: None,
            metrics,
            classifier: Arc::default(),
            bounces: Arc::default(),
            hooks: Arc::default(),
            failures: Arc::default(),
            traces: Arc::default(),
        }
    }

    /// Start a writer under `config.log_dir`.
    pub fn start(config: &LogConfig, metrics: Arc<Metrics>) -> std::io::Result<(Self, JoinHandle<()>)> {
        std::fs::create_dir_all(&config.log_dir)?;
        let (tx, rx) = mpsc::channel::<LogRecord>();
        let cfg = Arc::new(config.clone());
        let writer_cfg = cfg.clone();
        let handle =
            std::thread::Builder::new().name("petrel-logs".into()).spawn(move || write_loop(rx, &writer_cfg))?;
        let logger = Self { tx: Some(tx), config: Some(cfg), ..Self::counting(metrics) };
        Ok((logger, handle))
    }

    /// Where sessions copy their lines while someone watches.
    pub fn traces(&self) -> &Arc<crate::trace::TraceHub> {
        &self.traces
    }

    /// The counters (and recent-activity rings) records are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A record pre-filled from the message, with the configured headers
    /// when its body is loaded.
    pub fn record(&self, kind: RecordType, msg: &Message, response: ResponseInfo) -> LogRecord {
        let mut record = LogRecord::for_message(kind, msg, response);
        let Some(data) = &msg.data else { return record };
        let hooks = self.hooks.load();
        let local = self.config.iter().flat_map(|c| c.headers.iter());
        for name in local.chain(hooks.iter().flat_map(|h| h.headers())) {
            if !record.headers.contains_key(name)
                && let Some(value) = first_header(data, name)
            {
                record.headers.insert(name.clone(), value);
            }
        }
        record
    }

    /// Send every TransientFailure and Bounce record to `tx` too (`None`:
    /// stop), for shaping automation.
    pub fn watch_failures(&self, tx: Option<tokio::sync::mpsc::UnboundedSender<LogRecord>>) {
        self.failures.store(tx.map(Arc::new));
    }

    /// Hand every record from now on to `tap`'s hooks too (`None`: no hooks).
    pub fn set_hooks(&self, tap: Option<HookTap>) {
        self.hooks.store(tap.map(Arc::new));
    }

    /// Classify failures with `classifier` from now on (`None`: every
    /// failure is `Uncategorized`). A reload hands over its own.
    pub fn set_classifier(&self, classifier: Option<Arc<BounceClassifier>>) {
        self.classifier.store(classifier);
    }

    /// The last hour of classified failures by source and site.
    pub fn bounces(&self) -> &Arc<BounceWindow> {
        &self.bounces
    }

    /// Set a failure's `bounce_classification`, and count it by class,
    /// source and site.
    fn classify(&self, record: &mut LogRecord) {
        let permanent = match record.kind {
            RecordType::TransientFailure => false,
            RecordType::Bounce | RecordType::Expiration | RecordType::Oob => true,
            // Feedback records are classified when the report is read.
            _ => return,
        };
        if let Some(classifier) = &*self.classifier.load() {
            record.bounce_classification = classifier.classify(&record.response).to_string();
        }
        let source = record.egress_source.as_deref().unwrap_or("");
        // `source->site` as KumoMTA writes it; the site alone is what
        // operators compare across sources.
        let site = record.site.split_once("->").map_or(record.site.as_str(), |(_, site)| site);
        let class = &record.bounce_classification;
        self.metrics.count_classified(record.kind.as_str(), class, source, site);
        self.bounces.record(source, site, class, permanent);
    }

    /// Count and write one record (without blocking the caller).
    pub fn log(&self, mut record: LogRecord) {
        self.classify(&mut record);
        self.metrics.count(record.kind.as_str(), record.egress_pool.as_deref(), record.egress_source.as_deref());
        let at = record.timestamp.timestamp();
        self.metrics.activity.record(record.kind, record.egress_pool.as_deref(), record.egress_source.as_deref(), at);
        if matches!(record.kind, RecordType::Bounce | RecordType::Expiration) {
            tracing::info!(
                id = %record.id,
                recipient = %record.recipient,
                source = record.egress_source.as_deref().unwrap_or("-"),
                reply = %format!("{} {}", record.response.code, record.response.content),
                "{}", if record.kind == RecordType::Bounce { "bounced" } else { "expired" }
            );
        }
        if let Some(tap) = &*self.hooks.load() {
            tap.send(&record);
        }
        if matches!(record.kind, RecordType::TransientFailure | RecordType::Bounce)
            && let Some(tx) = &*self.failures.load()
        {
            let _ = tx.send(record.clone());
        }
        if let Some(config) = &self.config {
            record.headers.retain(|name, _| config.headers.iter().any(|h| h.eq_ignore_ascii_case(name)));
        }
        if let Some(keep) = self.config.as_ref().and_then(|c| c.meta.as_ref()) {
            record.meta.retain(|k, _| keep.contains(k));
        }
        if let Some(tx) = &self.tx {
            // The writer only exits once all senders are gone, so this holds.
            let _ = tx.send(record);
        }
    }
}

/// The open segment.
struct Segment {
    out: Box<dyn Write + Send>,
    written: u64,
    opened: Instant,
}

fn open_segment(config: &LogConfig) -> std::io::Result<Segment> {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.6f");
    let compressed = config.compression_level > 0;
    let name = if compressed { format!("{stamp}.jsonl.zst") } else { format!("{stamp}.jsonl") };
    let file = std::fs::OpenOptions::new().create(true).append(true).open(config.log_dir.join(name))?;
    let out: Box<dyn Write + Send> = if compressed {
        Box::new(zstd::Encoder::new(file, config.compression_level)?.auto_finish())
    } else {
        Box::new(std::io::BufWriter::new(file))
    };
    Ok(Segment { out, written: 0, opened: Instant::now() })
}

/// How long the writer waits after a burst before looking again: records
/// of those milliseconds queue up without waking it once each (a wake-up
/// costs the sending thread a futex call and this one a context switch).
const LINGER: Duration = Duration::from_millis(5);

/// Longest a written record waits for its segment's flush while records
/// keep coming.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn write_loop(rx: mpsc::Receiver<LogRecord>, config: &LogConfig) {
    let mut segment: Option<Segment> = None;
    while let Ok(first) = rx.recv() {
        let mut flushed = Instant::now();
        let mut next = Some(first);
        loop {
            while let Some(record) = next {
                write_record(&mut segment, config, &record);
                next = rx.try_recv().ok();
            }
            if flushed.elapsed() >= FLUSH_EVERY {
                flush(&mut segment);
                flushed = Instant::now();
            }
            std::thread::sleep(LINGER);
            next = rx.try_recv().ok();
            if next.is_none() {
                break;
            }
        }
        // Flush when the burst ends, so readers (and a crash) see records
        // promptly.
        flush(&mut segment);
    }
}

fn write_record(segment: &mut Option<Segment>, config: &LogConfig, record: &LogRecord) {
    let expired = segment.as_ref().is_some_and(|s| {
        s.written >= config.max_file_size || config.max_segment_duration.is_some_and(|d| s.opened.elapsed() >= d)
    });
    if expired {
        *segment = None; // dropping finishes the zstd frame
    }
    if segment.is_none() {
        match open_segment(config) {
            Ok(s) => *segment = Some(s),
            Err(e) => tracing::error!(error = %e, "cannot open a log segment"),
        }
    }
    if let Some(s) = segment.as_mut() {
        let mut line = serde_json::to_vec(record).expect("log records always serialize");
        line.push(b'\n');
        match s.out.write_all(&line) {
            Ok(()) => s.written += line.len() as u64,
            Err(e) => tracing::error!(error = %e, "cannot write a log record"),
        }
    }
}

fn flush(segment: &mut Option<Segment>) {
    if let Some(Err(e)) = segment.as_mut().map(|s| s.out.flush()) {
        tracing::error!(error = %e, "cannot flush the log segment");
    }
}

/// Log segment files under `dir`, oldest first.
pub fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".jsonl") || name.ends_with(".jsonl.zst")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The JSON lines of one segment. A segment still being written (or cut
/// short by a crash) yields every complete line it holds.
pub fn segment_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let file = std::fs::File::open(path)?;
    let mut text = Vec::new();
    if path.extension().is_some_and(|e| e == "zst") {
        let mut decoder = zstd::Decoder::new(file)?;
        // An unfinished frame ends in an error after the data it holds.
        let _ = decoder.read_to_end(&mut text);
    } else {
        BufReader::new(file).read_to_end(&mut text)?;
    }
    let mut lines: Vec<String> = text.lines().map_while(Result::ok).collect();
    if !text.ends_with(b"\n") {
        lines.pop(); // a partial last line
    }
    Ok(lines)
}

/// Every record in every segment under `dir`, oldest first.
pub fn read_records(dir: &Path) -> std::io::Result<Vec<LogRecord>> {
    let mut records = Vec::new();
    for file in segments(dir)? {
        for line in segment_lines(&file)? {
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
    use petrel_message::{EnvelopeAddress, Message};

    fn message() -> Message {
        let mut m = Message::new(
            EnvelopeAddress::parse("a@b.example").unwrap(),
            EnvelopeAddress::parse("c@d.example").unwrap(),
            Arc::from(&b"Subject: hello\r\n\r\nx\r\n"[..]),
        );
        m.set_meta("tenant", serde_json::json!("acme"));
        m.set_meta("secret", serde_json::json!("s"));
        m
    }

    #[test]
    fn compressed_segments_rotate_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path());
        config.max_file_size = 2000;
        config.meta = Some(vec!["tenant".into()]);
        config.headers = vec!["Subject".into()];
        let metrics = Arc::new(Metrics::new());
        let (logger, handle) = Logger::start(&config, metrics.clone()).unwrap();
        let response =
            ResponseInfo { code: 250, enhanced_code: Some("2.0.0".into()), content: "ok".into(), command: None };
        for _ in 0..20 {
            logger.log(logger.record(RecordType::Reception, &message(), response.clone()));
        }
        drop(logger);
        handle.join().unwrap();
        let files = segments(dir.path()).unwrap();
        assert!(files.len() > 1, "rotated by size: {files:?}");
        assert!(files.iter().all(|f| f.to_string_lossy().ends_with(".jsonl.zst")));
        let records = read_records(dir.path()).unwrap();
        assert_eq!(records.len(), 20);
        assert_eq!(records[0].headers.get("Subject").map(String::as_str), Some("hello"));
        assert!(records[0].meta.contains_key("tenant") && !records[0].meta.contains_key("secret"));
        assert!(
            metrics
                .render()
                .contains("petrel_messages_total{egress_pool=\"\",egress_source=\"\",event=\"Reception\"} 20")
        );
    }

    #[test]
    fn plain_segments_when_compression_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path());
        config.compression_level = 0;
        let (logger, handle) = Logger::start(&config, Arc::new(Metrics::new())).unwrap();
        logger.log(logger.record(RecordType::Delivery, &message(), ResponseInfo::default()));
        drop(logger);
        handle.join().unwrap();
        let raw = std::fs::read_to_string(&segments(dir.path()).unwrap()[0]).unwrap();
        assert!(raw.contains("\"type\":\"Delivery\""));
    }
}
