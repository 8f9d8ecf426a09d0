//! Delivery with a real spool and a real sink: source choice by weight,
//! connection reuse, and the outcome of each reply class.

use petrel_delivery::{Connector, Dispatcher, DispatcherHandles, EgressPathConfig, FixedEgressPolicy, Settlement};
use petrel_egress::{Overflow, RegistryBuilder};
use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{DeliveryProtocol, QueueConfig, QueueManager};
use petrel_spool::{RocksSpool, Spool, SpoolPaths};
use petrel_telemetry::{LogConfig, Logger, RecordType, read_records};
use petrel_testkit::{Sink, eventually};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Harness {
    queues: Arc<QueueManager>,
    spool: Arc<dyn Spool>,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    log_thread: std::thread::JoinHandle<()>,
}

fn start(sink: &Sink, pool: &[(&str, &str, i64)]) -> Harness {
    start_with(sink, pool, Overflow::Wait, HashMap::new())
}

/// `by_source`: path settings for some sources (default settings for the rest).
fn start_with(
    sink: &Sink,
    pool: &[(&str, &str, i64)],
    overflow: Overflow,
    by_source: HashMap<String, EgressPathConfig>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> = Arc::new(
        RocksSpool::open(&SpoolPaths { meta: dir.path().join("spool"), data: dir.path().join("spool") }).unwrap(),
    );
    let (logger, log_thread) = Logger::start(&LogConfig::new(dir.path().join("logs")), Default::default()).unwrap();
    let mut registry = RegistryBuilder::new();
    for (name, ip, _) in pool {
        registry.define_source(name, Some(ip), Some(format!("{name}.test")), None, "test").unwrap();
    }
    let entries = pool.iter().map(|(n, _, w)| (n.to_string(), *w)).collect();
    registry.define_pool("shared", entries, overflow, "test").unwrap();
    let config = QueueConfig {
        egress_pool: Some("shared".into()),
        retry_interval: Duration::from_millis(200),
        protocol: DeliveryProtocol::Smtp { mx_list: Some(vec![sink.addr().to_string().into()]) },
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let (queues, due) = QueueManager::new(Arc::new(config), spool.clone(), logger.clone(), shutdown.clone());
    let registry = Arc::new(registry.build().unwrap());
    let policy = FixedEgressPolicy { registry, path: EgressPathConfig::default(), by_source };
    let dispatcher = Dispatcher::new(DispatcherHandles {
        settle: Settlement { queues: queues.clone(), spool: spool.clone(), logger },
        connect: Connector {
            resolver: Arc::new(petrel_dns::HickoryResolver::system().unwrap()),
            tls: petrel_smtp_client::TlsConfigs::new(),
            limits: Arc::new(petrel_delivery::Limiter::new()),
        },
        policy: Arc::new(policy),
        default_ehlo: "localhost".into(),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(dispatcher.run(due));
    Harness { queues, spool, dir, shutdown, log_thread }
}

impl Harness {
    async fn inject(&self, n: usize) {
        for i in 0..n {
            let m = Message::new(
                EnvelopeAddress::parse("sender@a.example").unwrap(),
                EnvelopeAddress::parse(&format!("user{i}@dest.example")).unwrap(),
                Arc::from(format!("Subject: {i}\r\n\r\nhello\r\n").into_bytes()),
            );
            self.spool.store(std::slice::from_ref(&m)).await.unwrap();
            self.queues.insert(m);
        }
    }

    /// Stop everything and return the log records.
    async fn finish(self) -> Vec<petrel_telemetry::LogRecord> {
        self.shutdown.cancel();
        drop(self.queues);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.log_thread.join().unwrap();
        read_records(&self.dir.path().join("logs")).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_decide_the_share_of_each_source() {
    let sink = Sink::start().await;
    let h = start(&sink, &[("a", "127.0.0.2", 1), ("b", "127.0.0.3", 2)]);
    h.inject(300).await;
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 300).await);
    let got = sink.received();
    let from = |ip: &str| got.iter().filter(|m| m.peer.ip().to_string() == ip).count();
    assert_eq!((from("127.0.0.2"), from("127.0.0.3")), (100, 200));
    assert!(got.iter().all(|m| m.ehlo == if m.peer.ip().to_string() == "127.0.0.2" { "a.test" } else { "b.test" }));
    // Connections are reused: far fewer connections than messages.
    assert!(sink.total_connections() <= 64, "{} connections", sink.total_connections());
    assert!(eventually(Duration::from_secs(5), || h.spool.enumerate().unwrap().is_empty()).await);
    let records = h.finish().await;
    let delivered: Vec<_> = records.iter().filter(|r| r.kind == RecordType::Delivery).collect();
    assert_eq!(delivered.len(), 300);
    assert!(delivered.iter().all(|r| r.egress_pool.as_deref() == Some("shared") && r.response.code == 250));
}

/// Source `a` may open one connection and keep 4 messages ready, `b` eight
/// and the default, and the receiver takes 20 ms per message: `a`'s ready
/// queue fills at once.
fn a_is_slow() -> HashMap<String, EgressPathConfig> {
    let path = |connection_limit, max_ready| EgressPathConfig {
        connection_limit,
        max_ready,
        max_recipients_per_batch: 1,
        ..Default::default()
    };
    HashMap::from([("a".to_string(), path(1, 4)), ("b".to_string(), path(8, 1024))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_source_keeps_its_share_unless_the_pool_spills() {
    const N: usize = 120;
    let sink = Sink::start().await;
    sink.set_reply_delay(Duration::from_millis(20));
    let h = start_with(&sink, &[("a", "127.0.0.2", 1), ("b", "127.0.0.3", 1)], Overflow::Wait, a_is_slow());
    h.inject(N).await;
    assert!(eventually(Duration::from_secs(30), || sink.received_count() == N).await);
    let got = sink.received();
    let from_a = got.iter().filter(|m| m.peer.ip().to_string() == "127.0.0.2").count();
    assert_eq!(from_a, N / 2, "weights hold while a's ready queue is full");
    // Waiting messages hold no body in memory: each one was read back from
    // the spool, unchanged.
    for m in &got {
        let i: usize = m.recipients[0].trim_start_matches("user").split('@').next().unwrap().parse().unwrap();
        assert_eq!(m.data, format!("Subject: {i}\r\n\r\nhello\r\n").into_bytes());
    }
    h.finish().await;

    let sink = Sink::start().await;
    sink.set_reply_delay(Duration::from_millis(20));
    let h = start_with(&sink, &[("a", "127.0.0.2", 1), ("b", "127.0.0.3", 1)], Overflow::Spill, a_is_slow());
    h.inject(N).await;
    assert!(eventually(Duration::from_secs(30), || sink.received_count() == N).await);
    let from_a = sink.received().iter().filter(|m| m.peer.ip().to_string() == "127.0.0.2").count();
    assert!(from_a < N / 3, "a spilling pool gives a busy source's mail to the other: a sent {from_a} of {N}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_then_success_and_permanent_bounce() {
    let sink = Sink::start_with(Arc::new(|m, attempt| match (m.recipients[0].as_str(), attempt) {
        ("user0@dest.example", 1) => (451, "4.7.1 try later".into()),
        ("user1@dest.example", _) => (550, "5.1.1 unknown user".into()),
        _ => (250, "2.0.0 ok".into()),
    }))
    .await;
    let h = start(&sink, &[("a", "127.0.0.2", 1)]);
    h.inject(2).await;
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert!(eventually(Duration::from_secs(5), || h.spool.enumerate().unwrap().is_empty()).await);
    assert_eq!(sink.attempts("user0@dest.example"), 2);
    let records = h.finish().await;
    let kinds = |rcpt: &str| records.iter().filter(|r| r.recipient == rcpt).map(|r| r.kind).collect::<Vec<_>>();
    assert_eq!(kinds("user0@dest.example"), [RecordType::TransientFailure, RecordType::Delivery]);
    assert_eq!(kinds("user1@dest.example"), [RecordType::Bounce]);
    let bounce = records.iter().find(|r| r.kind == RecordType::Bounce).unwrap();
    assert_eq!(bounce.response.enhanced_code.as_deref(), Some("5.1.1"));
    assert!(bounce.source_address.as_ref().unwrap().address.starts_with("127.0.0.2:"), "{:?}", bounce.source_address);
    assert_eq!(bounce.response.command.as_deref(), Some("."), "the sink refuses at the end of data");
    assert_eq!(bounce.delivery_protocol.as_deref(), Some("ESMTP"));
    assert!(bounce.site.starts_with("a->"), "source->site: {}", bounce.site);
}
