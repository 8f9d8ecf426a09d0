//! The delivery engine as an operator sees it: connection limits under load,
//! MX resolution against a real DNS server, STARTTLS, expiry.

use petrel_e2e::{DnsServer, Sink, TestDaemon, Workspace, Zone, eventually, inject, smart_host_events};
use petrel_telemetry::RecordType;
use std::sync::Arc;
use std::time::Duration;

fn path_events(fields: &str) -> String {
    format!(
        "kumo.on('get_egress_path_config', function(routing_domain, source, site)\n  return kumo.make_egress_path {{ {fields} }}\nend)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds_under_load() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = format!("{}\n{}", smart_host_events(sink.addr(), ""), path_events("connection_limit = 2"));
    let policy = ws.policy(
        "  kumo.define_egress_source { name = 's', source_address = '127.0.0.2' }\n  kumo.define_egress_pool { name = 'default', entries = { { name = 's' } } }",
        &events,
    );
    let daemon = TestDaemon::start(&policy).unwrap();
    let accepted = inject(daemon.smtp[0], 500, 10, |i| ("s@a.example".into(), format!("r{i}@one-site.example"))).await;
    assert_eq!(accepted, 500);
    assert!(
        eventually(Duration::from_secs(60), || sink.received_count() == 500).await,
        "got {}",
        sink.received_count()
    );
    let peak = sink.max_concurrent_from("127.0.0.2".parse().unwrap());
    assert!((1..=2).contains(&peak), "peak concurrent connections from the source: {peak}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_resolution_falls_over_and_honours_null_mx() {
    let sink = Sink::start().await;
    let zone = Zone::new()
        .mx("two.test", 10, "dead.two.test")
        .mx("two.test", 20, "live.two.test")
        .addr("dead.two.test", "127.0.0.7".parse().unwrap())
        .addr("live.two.test", "127.0.0.1".parse().unwrap())
        .addr("bare.test", "127.0.0.1".parse().unwrap())
        .null_mx("nullmx.test");
    let dns = DnsServer::start(zone).await;
    let ws = Workspace::new();
    let port = sink.addr().port();
    let events = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ retry_interval = 1 }} end)\n{}",
        path_events(&format!("smtp_port = {port}, prohibited_hosts = {{}}, connect_timeout = 2"))
    );
    let policy =
        ws.policy(&format!("  kumo.dns.configure_resolver {{ name_servers = {{ '{}' }} }}", dns.addr()), &events);
    let daemon = TestDaemon::start(&policy).unwrap();
    let rcpts = ["user@two.test", "user@bare.test", "user@nullmx.test"];
    assert_eq!(inject(daemon.smtp[0], 3, 1, move |i| ("s@a.example".into(), rcpts[i].into())).await, 3);
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 2).await, "got {}", sink.received_count());
    let mut got: Vec<String> = sink.received().iter().map(|m| m.recipients[0].clone()).collect();
    got.sort();
    assert_eq!(got, ["user@bare.test", "user@two.test"]);
    assert!(eventually(Duration::from_secs(5), || ws.records().iter().any(|r| r.kind == RecordType::Bounce)).await);
    daemon.stop();
    let records = ws.records();
    let bounce = records.iter().find(|r| r.kind == RecordType::Bounce).unwrap();
    assert_eq!(bounce.recipient, "user@nullmx.test");
    assert_eq!(bounce.response.enhanced_code.as_deref(), Some("5.1.10"));
    let via = records.iter().find(|r| r.kind == RecordType::Delivery && r.recipient == "user@two.test").unwrap();
    assert_eq!(via.site, "default->dead.two.test,live.two.test");
    let peer = via.peer_address.as_ref().unwrap();
    assert_eq!(peer.name, "live.two.test", "delivered via the second MX");
    assert!(peer.addr.starts_with("127.0.0.1:"), "{peer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_pointing_at_loopback_is_prohibited_by_default() {
    let sink = Sink::start().await;
    let dns = DnsServer::start(
        Zone::new().mx("loop.test", 10, "mx.loop.test").addr("mx.loop.test", "127.0.0.1".parse().unwrap()),
    )
    .await;
    let ws = Workspace::new();
    let events = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{}} end)\n{}",
        path_events(&format!("smtp_port = {}", sink.addr().port()))
    );
    let policy =
        ws.policy(&format!("  kumo.dns.configure_resolver {{ name_servers = {{ '{}' }} }}", dns.addr()), &events);
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "u@loop.test".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || ws.records().iter().any(|r| r.kind == RecordType::Bounce)).await);
    daemon.stop();
    assert_eq!(sink.total_connections(), 0, "the prohibited host was never contacted");
    let bounce = ws.records().into_iter().find(|r| r.kind == RecordType::Bounce).unwrap();
    assert_eq!(bounce.response.enhanced_code.as_deref(), Some("5.4.4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_tls_is_used_and_logged() {
    let sink = Sink::start_tls(Arc::new(|_, _| (250, "ok".into()))).await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), ""));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 1).await);
    assert!(sink.received()[0].tls.is_some(), "the sink received over TLS");
    daemon.stop();
    let delivery = ws.records().into_iter().find(|r| r.kind == RecordType::Delivery).unwrap();
    assert!(
        delivery.tls_protocol_version.as_deref().unwrap().starts_with("TLSv1_"),
        "{:?}",
        delivery.tls_protocol_version
    );
    assert!(delivery.tls_cipher.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_without_starttls_stays_queued() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = format!(
        "{}\n{}",
        smart_host_events(sink.addr(), "retry_interval = 60,"),
        path_events("enable_tls = 'Required'")
    );
    let policy = ws.policy("", &events);
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    assert!(
        eventually(Duration::from_secs(10), || ws.records().iter().any(|r| r.kind == RecordType::TransientFailure))
            .await
    );
    daemon.stop();
    assert_eq!(sink.received_count(), 0, "never sent in clear");
    let failure = ws.records().into_iter().find(|r| r.kind == RecordType::TransientFailure).unwrap();
    assert!(failure.response.content.contains("STARTTLS"), "{}", failure.response.content);
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 1, "the message is still queued");
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expire_after_max_age() {
    let sink = Sink::start_with(Arc::new(|_, _| (451, "4.3.0 always later".into()))).await;
    let ws = Workspace::new();
    // Notifications are tested in dsn.rs; here the queue keeps only the message.
    let policy =
        ws.policy("", &smart_host_events(sink.addr(), "retry_interval = 1, max_age = 3, generate_bounces = false,"));
    let daemon = TestDaemon::start(&policy).unwrap();
    assert_eq!(inject(daemon.smtp[0], 1, 1, |_| ("s@a.example".into(), "r@b.example".into())).await, 1);
    assert!(
        eventually(Duration::from_secs(15), || ws.records().iter().any(|r| r.kind == RecordType::Expiration)).await
    );
    daemon.stop();
    let kinds: Vec<_> = ws.records().iter().map(|r| r.kind).collect();
    assert_eq!(kinds.first(), Some(&RecordType::Reception));
    assert_eq!(kinds.last(), Some(&RecordType::Expiration));
    assert!(kinds.iter().filter(|k| **k == RecordType::TransientFailure).count() >= 1);
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 0, "the expired message left the spool");
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_of_one_message_share_a_transaction_per_domain() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let policy = ws.policy("", &smart_host_events(sink.addr(), ""));
    let daemon = TestDaemon::start(&policy).unwrap();
    // Suspend the queues so all copies wait together, then release them.
    daemon.controls.suspend_queue("a.example");
    daemon.controls.suspend_queue("b.example");
    let opts =
        petrel_smtp_client::ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), daemon.smtp[0], "client.test");
    let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
    let rcpts = ["1@a.example", "2@a.example", "3@a.example", "4@b.example", "5@b.example"];
    let results =
        client.send_batch("news@s.example", &rcpts, b"Subject: one body\r\n\r\nhello\r\n", false).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    daemon.controls.resume_queue("a.example");
    daemon.controls.resume_queue("b.example");
    assert!(eventually(Duration::from_secs(10), || sink.received_count() == 5).await);
    assert_eq!(sink.transactions(), 2, "one transaction per recipient domain");
    daemon.stop();
    let delivered = ws.records().into_iter().filter(|r| r.kind == RecordType::Delivery).count();
    assert_eq!(delivered, 5, "each recipient still has its own log record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_receiver_closed_while_idle_is_replaced_without_a_failed_attempt() {
    let sink = Sink::start().await;
    sink.set_hang_up_after_data(true);
    let ws = Workspace::new();
    let daemon = TestDaemon::start(&ws.policy("", &smart_host_events(sink.addr(), "retry_interval = '1h',"))).unwrap();
    for i in 0..3 {
        assert_eq!(inject(daemon.smtp[0], 1, 1, move |_| ("s@a.example".into(), format!("r{i}@b.example"))).await, 1);
        assert!(eventually(Duration::from_secs(10), || sink.received_count() == i + 1).await, "message {i}");
        // Let the worker sit on the connection the sink has just closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop();
    let failures: Vec<_> = ws.records().into_iter().filter(|r| r.kind == RecordType::TransientFailure).collect();
    assert!(failures.is_empty(), "a stale connection is no failed attempt: {failures:?}");
    assert!(sink.total_connections() >= 3, "each message got a fresh connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_rate_holds_for_messages_that_cannot_share_a_transaction() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    // Suspend delivery until all 40 are queued, so pacing alone sets the pace.
    let events = format!(
        "{}\n{}",
        smart_host_events(sink.addr(), ""),
        path_events("max_message_rate = '20/s', connection_limit = 4")
    );
    let daemon = TestDaemon::start(&ws.policy("", &events)).unwrap();
    daemon.controls.suspend_queue("b.example");
    // Same sender, domain and size, different bodies: each needs its own
    // transaction, and none may use up a rate slot it does not send.
    let opts = petrel_smtp_client::ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), daemon.smtp[0], "i.test");
    let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
    for i in 0..40 {
        let body = format!("Subject: paced\r\n\r\nbody {i:03}\r\n");
        client.send("s@a.example", &format!("r{i:02}@b.example"), body.as_bytes()).await.unwrap();
    }
    client.quit().await;
    let started = std::time::Instant::now();
    daemon.controls.resume_queue("b.example");
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 40).await, "got {}", sink.received_count());
    let took = started.elapsed();
    // 40 at 20/s: the first at once, the last 1.95 s later (±10 %, plus slack for the last reply).
    println!("40 messages at max_message_rate 20/s took {took:?}");
    assert!(took >= Duration::from_millis(1750) && took <= Duration::from_millis(2600), "took {took:?}");
    let order: Vec<String> = sink.received().iter().map(|m| m.recipients[0].clone()).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("r{i:02}@b.example")).collect();
    assert_eq!(order, expected, "delivered in arrival order");
    daemon.stop();
}
