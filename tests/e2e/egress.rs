//! Source choice as the sink sees it: which address each message came from,
//! and which EHLO name it was greeted with.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, inject, smart_host_events};
use std::collections::HashMap;
use std::time::Duration;

fn by_peer(sink: &Sink) -> HashMap<String, (usize, Vec<String>)> {
    let mut map: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    for m in sink.received() {
        let entry = map.entry(m.peer.ip().to_string()).or_default();
        entry.0 += 1;
        if !entry.1.contains(&m.ehlo) {
            entry.1.push(m.ehlo.clone());
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_pool_splits_300_messages_100_to_200() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy(
        r#"  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2', ehlo_domain = 'mta2.petrel.test' }
  kumo.define_egress_source { name = 'ip-3', source_address = '127.0.0.3', ehlo_domain = 'mta3.petrel.test' }
  kumo.define_egress_pool { name = 'shared', entries = { { name = 'ip-2', weight = 1 }, { name = 'ip-3', weight = 2 } } }"#,
        &smart_host_events(sink.addr(), "egress_pool = 'shared',"),
    );
    let daemon = TestDaemon::start(&policy).unwrap();
    let accepted =
        inject(daemon.smtp[0], 300, 6, |i| ("news@sender.example".into(), format!("user{i}@dest.example"))).await;
    assert_eq!(accepted, 300);
    assert!(
        eventually(Duration::from_secs(30), || sink.received_count() == 300).await,
        "got {}",
        sink.received_count()
    );
    let peers = by_peer(&sink);
    assert_eq!(peers["127.0.0.2"], (100, vec!["mta2.petrel.test".to_string()]));
    assert_eq!(peers["127.0.0.3"], (200, vec!["mta3.petrel.test".to_string()]));
    assert_eq!(peers.len(), 2);
    daemon.stop();
    let delivered = ws.records().iter().filter(|r| r.kind == petrel_telemetry::RecordType::Delivery).count();
    assert_eq!(delivered, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_customer_leaves_from_its_own_pool() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    // Momentum's Match_Domain, written as policy: the envelope sender's
    // domain picks the pool; anything else falls back to `default`.
    let events = format!(
        r#"local pools = {{ ['a.example'] = 'customer-a', ['b.example'] = 'customer-b' }}
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local pool = pools[msg:sender().domain]
  if pool then
    msg:set_meta('egress_pool', pool)
  end
end)
{}"#,
        smart_host_events(sink.addr(), "")
    );
    let policy = ws.policy(
        r#"  kumo.define_egress_source { name = 'a-1', source_address = '127.0.0.2', ehlo_domain = 'a.mta.test' }
  kumo.define_egress_source { name = 'b-1', source_address = '127.0.0.3', ehlo_domain = 'b.mta.test' }
  kumo.define_egress_pool { name = 'customer-a', entries = { { name = 'a-1' } } }
  kumo.define_egress_pool { name = 'customer-b', entries = { { name = 'b-1' } } }"#,
        &events,
    );
    let daemon = TestDaemon::start(&policy).unwrap();
    let senders = ["news@a.example", "news@b.example", "misc@other.example"];
    let accepted = inject(daemon.smtp[0], 30, 3, move |i| (senders[i % 3].into(), format!("r{i}@dest.example"))).await;
    assert_eq!(accepted, 30);
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 30).await);
    for m in sink.received() {
        let expected = match m.sender.as_str() {
            "news@a.example" => "127.0.0.2",
            "news@b.example" => "127.0.0.3",
            _ => "127.0.0.1",
        };
        assert_eq!(m.peer.ip().to_string(), expected, "{} left from the wrong address", m.sender);
    }
    daemon.stop();
    let records = ws.records();
    let pool_of = |sender: &str| {
        records
            .iter()
            .filter(|r| r.kind == petrel_telemetry::RecordType::Delivery && r.sender == sender)
            .map(|r| r.egress_pool.clone().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(pool_of("news@a.example").into_iter().collect::<Vec<_>>(), ["customer-a"]);
    assert_eq!(pool_of("misc@other.example").into_iter().collect::<Vec<_>>(), ["default"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_remote_port_overrides_the_destination_port() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let init = format!(
        "  kumo.define_egress_source {{ name = 'nat', source_address = '127.0.0.2', remote_port = {} }}\n  kumo.define_egress_pool {{ name = 'default', entries = {{ {{ name = 'nat' }} }} }}",
        sink.addr().port()
    );
    // The smart host names no port (25 would be used); the source's wins.
    let events = "kumo.on('get_queue_config', function() return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1' } } } } end)";
    let daemon = TestDaemon::start(&ws.policy(&init, events)).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert_eq!(sink.received()[0].peer.ip().to_string(), "127.0.0.2");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_address_not_on_this_host_defers_with_a_clear_reason() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let init = "  kumo.define_egress_source { name = 'gone', source_address = '192.0.2.1' }\n  kumo.define_egress_pool { name = 'default', entries = { { name = 'gone' } } }";
    let daemon = TestDaemon::start(&ws.policy(init, &smart_host_events(sink.addr(), "retry_interval = 60,"))).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    let deferred = || ws.records().iter().any(|r| r.kind == petrel_telemetry::RecordType::TransientFailure);
    assert!(eventually(Duration::from_secs(10), deferred).await);
    daemon.stop();
    let record = ws.records().into_iter().find(|r| r.kind == petrel_telemetry::RecordType::TransientFailure).unwrap();
    assert!(record.response.content.contains("cannot bind source address 192.0.2.1"), "{}", record.response.content);
    assert_eq!(record.response.enhanced_code.as_deref(), Some("4.4.0"));
    assert_eq!(sink.total_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_address_will_not_bind_is_skipped_and_its_share_goes_to_the_others() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    // 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails locally,
    // before any packet is sent.
    let policy = ws.policy(
        r#"  kumo.define_egress_source { name = 'absent', source_address = '192.0.2.1', ehlo_domain = 'absent.petrel.test' }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2', ehlo_domain = 'mta2.petrel.test' }
  kumo.define_egress_pool { name = 'shared', entries = { { name = 'absent', weight = 1 }, { name = 'ip-2', weight = 1 } } }
  kumo.start_http_listener { listen = '127.0.0.1:0' }"#,
        &smart_host_events(sink.addr(), "egress_pool = 'shared',"),
    );
    let daemon = TestDaemon::start(&policy).unwrap();
    let accepted =
        inject(daemon.smtp[0], 10, 1, |i| ("news@sender.example".into(), format!("u{i}@dest.example"))).await;
    assert_eq!(accepted, 10);
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 10).await, "got {}", sink.received_count());
    let peers = by_peer(&sink);
    assert_eq!(peers["127.0.0.2"].0, 10, "every message left from the source that works");
    let metrics = petrel_e2e::http("GET", format!("http://{}/metrics", daemon.http[0]), vec![], None).await.body;
    assert!(metrics.contains("petrel_source_unhealthy{egress_source=\"absent\"} 1"), "{metrics}");
    let summary =
        petrel_e2e::http("GET", format!("http://{}/api/admin/queue-summary/v1", daemon.http[0]), vec![], None).await;
    assert!(summary.body.contains("\"source_unhealthy\":true"), "{}", summary.body);
    daemon.stop();
    // Only the messages routed to the broken source before its first failure
    // met it (one, or a few under load, never its share of ten); each
    // record says why.
    let records = ws.records();
    let failures: Vec<_> = records
        .iter()
        .filter(|r| !matches!(r.kind, petrel_telemetry::RecordType::Delivery | petrel_telemetry::RecordType::Reception))
        .collect();
    assert!((1..=3).contains(&failures.len()), "{failures:?}");
    assert!(failures.iter().all(|f| f.response.content.contains("cannot bind source address 192.0.2.1")));
}
