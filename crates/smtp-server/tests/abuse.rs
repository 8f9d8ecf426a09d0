//! Abuse resistance over real sockets: per-address connection limits, slow
//! clients, error and junk caps, AUTH brute force, envelope and header
//! limits.

mod common;

use common::*;
use std::time::Instant;

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let s = server(|c| {
        c.max_connections = 10;
        c.max_connections_per_ip = 3;
        c.relay_hosts = vec![petrel_smtp_server::parse_cidr("127.0.0.1").unwrap()];
    })
    .await;
    let mut hog = Vec::new();
    for _ in 0..3 {
        hog.push(connect_from(&s, "127.0.0.9").await);
    }
    let mut refused = TcpSocket::new_v4().unwrap();
    refused.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let stream = refused.connect(s.addr).await.unwrap();
    let mut c = Client { stream, pending: Vec::new() };
    assert!(c.reply().await.starts_with("421 4.7.0"), "a fourth from the same address is refused");
    // Another address, and the relay host, still get in.
    connect_from(&s, "127.0.0.8").await;
    let mut relay = connect_from(&s, "127.0.0.1").await;
    assert!(relay.cmd("EHLO relay.test").await.starts_with("250"));
    drop(hog.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    refused = TcpSocket::new_v4().unwrap();
    refused.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let mut c = Client { stream: refused.connect(s.addr).await.unwrap(), pending: Vec::new() };
    assert!(c.reply().await.starts_with("220"), "a slot freed is usable again");
}

#[tokio::test]
async fn a_command_dripped_byte_by_byte_times_out_on_its_deadline() {
    let s = server(|c| c.client_timeout = Duration::from_millis(800)).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    let started = Instant::now();
    let mut closed = false;
    for b in b"EHLO slow.client.example.com\r\n" {
        if c.stream.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let reply = c.reply().await;
    assert!(closed || reply.starts_with("421 4.4.2"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(4), "each byte did not reset the clock");
}

#[tokio::test]
async fn data_slower_than_the_minimum_rate_is_cut_off() {
    let s = server(|c| {
        c.client_timeout = Duration::from_millis(800);
        c.min_data_rate = 100;
    })
    .await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    c.envelope("r@d.example").await;
    let started = Instant::now();
    // 10 octets every 400 ms: 25 octets/s, under the 100 required.
    while started.elapsed() < Duration::from_secs(5) {
        if c.stream.write_all(b"0123456789").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        if !c.pending.is_empty() {
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), c.stream.read(&mut probe)).await {
            c.pending.extend_from_slice(&probe[..n]);
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(String::from_utf8_lossy(&c.pending).starts_with("421 4.4.2"), "{:?}", String::from_utf8_lossy(&c.pending));
    assert_eq!(spooled(&s).await, 0);
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let s = server(|c| c.max_errors = 5).await;
    let mut c = connect_from(&s, "127.0.0.9").await;
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    let mut last = String::new();
    for n in 0..10 {
        last = c.cmd(&format!("RCPT TO:<r{n}@elsewhere.example>")).await;
        if last.contains("421") {
            break;
        }
        assert!(last.starts_with("550 5.7.1"), "{last}");
    }
    assert!(last.contains("421 4.7.0"), "{last}");
    assert_eq!(c.reply().await, "", "closed");
}

#[tokio::test]
async fn junk_commands_are_capped_but_mail_resets_the_count() {
    let s = server(|c| c.max_junk_commands = 5).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    for _ in 0..5 {
        assert!(c.cmd("NOOP").await.starts_with("250"));
    }
    c.envelope("r@d.example").await;
    assert!(c.cmd("Subject: x\r\n\r\nx\r\n.").await.starts_with("250"));
    for _ in 0..5 {
        assert!(c.cmd("RSET").await.starts_with("250"), "counted afresh after mail");
    }
    let last = c.cmd("NOOP").await;
    assert!(last.starts_with("421 4.7.0"), "{last}");
    assert_eq!(c.reply().await, "", "closed");
}

#[tokio::test]
async fn auth_failures_slow_down_then_close_and_are_remembered_per_address() {
    let s = server(|c| c.max_auth_failures = 3).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    let wrong = base64::engine::general_purpose::STANDARD.encode("\0user\0wrong");
    let mut waits = Vec::new();
    let mut last = String::new();
    for _ in 0..3 {
        let started = Instant::now();
        last = c.cmd(&format!("AUTH PLAIN {wrong}")).await;
        waits.push(started.elapsed());
    }
    assert!(last.starts_with("535"), "{last}");
    let closing = c.reply().await;
    assert!(closing.starts_with("421 4.7.0"), "{closing}");
    assert!(waits[0] >= Duration::from_millis(250), "{waits:?}");
    assert!(waits[2] >= Duration::from_millis(1000) && waits[2] > waits[0], "{waits:?}");
    assert_eq!(c.reply().await, "", "closed after the third failure");
    // A new session from the same address starts out slowed down.
    let mut again = connect_from(&s, "127.0.0.1").await;
    again.cmd("EHLO client.test").await;
    let right = base64::engine::general_purpose::STANDARD.encode("\0user\0pw");
    let started = Instant::now();
    assert!(again.cmd(&format!("AUTH PLAIN {right}")).await.starts_with("235"));
    assert!(started.elapsed() >= Duration::from_secs(1), "remembered: {:?}", started.elapsed());
}

#[tokio::test]
async fn envelope_and_header_limits() {
    let s = server(|c| {
        c.max_received_headers = 10;
        c.max_header_fields = 50;
    })
    .await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@d.example> FOO=bar").await.starts_with("555 5.5.4"));
    let long = format!("RCPT TO:<{}@{}.example>", "a".repeat(60), vec!["d".repeat(60); 4].join("."));
    assert!(c.cmd(&long).await.starts_with("501"), "a path over 256 octets");
    assert!(c.cmd("RCPT TO:<b@d.example>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let hops: String = (0..11).map(|i| format!("Received: from hop{i}\r\n")).collect();
    assert!(c.cmd(&format!("{hops}Subject: loop\r\n\r\nx\r\n.")).await.starts_with("554 5.4.6"));
    c.envelope("b@d.example").await;
    let fields: String = (0..51).map(|i| format!("X-F{i}: v\r\n")).collect();
    assert!(c.cmd(&format!("{fields}\r\nx\r\n.")).await.starts_with("552 5.3.4"));
    c.envelope("b@d.example").await;
    assert!(c.cmd("Received: one\r\nSubject: ok\r\n\r\nx\r\n.").await.starts_with("250"));
    assert_eq!(spooled(&s).await, 1);
}

#[tokio::test]
async fn a_data_reply_for_many_recipients_stays_within_512_octets() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    for n in 0..300 {
        assert!(c.cmd(&format!("RCPT TO:<r{n}@d.example>")).await.starts_with("250"));
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    let done = c.cmd("Subject: many\r\n\r\nx\r\n.").await;
    assert!(done.starts_with("250 2.0.0 OK ids=") && done.contains("and 292 more"), "{done}");
    assert!(done.len() <= 512, "{} octets", done.len());
    assert_eq!(spooled(&s).await, 300);
}

#[tokio::test]
async fn a_nul_in_the_content_is_refused() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    c.envelope("r@d.example").await;
    assert!(c.cmd("Subject: x\r\n\r\nbefore\0after\r\n.").await.starts_with("554 5.6.0"));
    assert_eq!(spooled(&s).await, 0);
}

#[tokio::test]
async fn a_session_past_its_longest_duration_is_closed() {
    let s = server(|c| c.max_session_duration = Duration::from_millis(300)).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.cmd("NOOP").await.starts_with("250"), "the command in hand is answered");
    let closing = c.reply().await;
    assert!(closing.starts_with("421 4.4.2"), "{closing}");
    assert_eq!(c.reply().await, "", "closed");
}
