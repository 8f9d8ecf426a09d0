//! What an attacker tries against the listener, over real sockets with a
//! real spool: SMTP smuggling, STARTTLS command injection, relay tricks,
//! and every limit one past its edge.

mod common;

use common::*;

#[tokio::test]
async fn smuggled_messages_are_never_spooled() {
    let s = server(|_| {}).await;
    let variants = petrel_smtp_proto::SMUGGLING_TERMINATORS;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    for v in variants {
        c.envelope("victim@d.example").await;
        let mut data = b"Subject: first\r\n\r\nfirst".to_vec();
        data.extend_from_slice(v);
        data.extend_from_slice(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<smuggled@d.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nforged\r\n.\r\n");
        c.stream.write_all(&data).await.unwrap();
        let verdict = c.reply().await;
        // Exactly one reply: the smuggled commands were part of the message.
        assert!(verdict.starts_with("550 5.6.0") || verdict.starts_with("554 5.6.0"), "{v:?}: {verdict}");
        assert!(c.cmd("NOOP").await.starts_with("250"), "{v:?}: still in step");
    }
    let bodies = s.spool.enumerate().unwrap();
    for m in bodies {
        assert_ne!(m.sender.email(), "evil@x.example", "a smuggled message was spooled");
        assert_ne!(m.recipient.email(), "smuggled@d.example");
    }
}

#[tokio::test]
async fn the_terminator_split_at_every_byte_still_ends_the_message() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    let message = b"Subject: split\r\n\r\nbody\r\n.\r\n";
    let tail = message.len() - 5;
    for cut in tail..=message.len() {
        c.envelope("r@d.example").await;
        c.stream.write_all(&message[..cut]).await.unwrap();
        c.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.stream.write_all(&message[cut..]).await.unwrap();
        assert!(c.reply().await.starts_with("250 "), "cut at {cut}");
    }
    assert_eq!(spooled(&s).await, 6);
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    assert!(c.cmd("EHLO client.test").await.contains("STARTTLS"));
    c.stream.write_all(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@x.example>\r\n").await.unwrap();
    let answer = c.reply().await;
    assert!(answer.starts_with("220 "), "{answer}");
    assert!(c.pending.is_empty(), "only the STARTTLS was answered");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), c.stream)
        .await
        .unwrap();
    let mut c = Client { stream: tls, pending: Vec::new() };
    // The session starts clean: the injected MAIL never happened.
    assert!(c.cmd("RCPT TO:<r@d.example>").await.starts_with("503"), "no sender carried over");
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(!ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    c.envelope("r@d.example").await;
    assert!(c.cmd("Subject: over tls\r\n\r\nx\r\n.").await.starts_with("250 "));
    let bodies = s.spool.enumerate().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].sender.email(), "a@s.example");
    let data = s.spool.load_data(bodies[0].id).await.unwrap();
    assert!(String::from_utf8_lossy(&data).contains("with ESMTPS"));
}

#[tokio::test]
async fn relay_tricks_from_outside_are_refused() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.9").await;
    c.cmd("EHLO outsider.test").await;
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    for trick in [
        "user@other@example.com",
        "\"user@other\"@example.com",
        "user%other@example.com",
        "@inbound.example:user@example.com",
        "user@[127.0.0.1]",
        "user@example.com.",
        "user@INBOUND.example.evil.com",
    ] {
        let answer = c.cmd(&format!("RCPT TO:<{trick}>")).await;
        assert!(answer.starts_with("550 5.7.1") || answer.starts_with("501"), "{trick}: {answer}");
    }
    // Mail for an inbound domain is fine from anywhere.
    assert!(c.cmd("RCPT TO:<postmaster@inbound.example>").await.starts_with("250"));
    // AUTH is neither offered nor accepted in clear from off the host.
    let mut d = connect_from(&s, "127.0.0.9").await;
    assert!(!d.cmd("EHLO outsider.test").await.contains("AUTH"));
    assert!(d.cmd("AUTH PLAIN AHVzZXIAcHc=").await.starts_with("538 5.7.11"));
}

#[tokio::test]
async fn authenticating_lets_one_session_relay_not_the_next() {
    let s = server(|_| {}).await;
    // From loopback, AUTH is offered without TLS.
    let mut authed = connect_from(&s, "127.0.0.1").await;
    let ehlo = authed.cmd("EHLO client.test").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let wrong = base64::engine::general_purpose::STANDARD.encode("\0user\0nope");
    assert!(authed.cmd(&format!("AUTH PLAIN {wrong}")).await.starts_with("535 5.7.8"));
    let right = base64::engine::general_purpose::STANDARD.encode("\0user\0pw");
    assert!(authed.cmd(&format!("AUTH PLAIN {right}")).await.starts_with("235"));
    // A second session from the same address knows nothing of it. (Relay
    // from loopback is allowed by relay_hosts, so check with a listener that
    // trusts nobody.)
    let strict = server(|c| c.relay_hosts.clear()).await;
    let mut a = connect_from(&strict, "127.0.0.1").await;
    a.cmd("EHLO a.test").await;
    a.cmd("AUTH LOGIN").await;
    a.cmd(&base64::engine::general_purpose::STANDARD.encode("user")).await;
    assert!(a.cmd(&base64::engine::general_purpose::STANDARD.encode("pw")).await.starts_with("235"));
    assert!(a.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    assert!(a.cmd("RCPT TO:<anyone@elsewhere.example>").await.starts_with("250"), "authenticated: may relay");
    let mut b = connect_from(&strict, "127.0.0.1").await;
    b.cmd("EHLO b.test").await;
    assert!(b.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    assert!(b.cmd("RCPT TO:<anyone@elsewhere.example>").await.starts_with("550 5.7.1"), "not authenticated: may not");
    a.envelope_done().await;
    let ids: Vec<_> =
        strict.spool.enumerate().unwrap().into_iter().map(|m| m.meta_str("authn_id").map(str::to_string)).collect();
    assert_eq!(ids, [Some("user".to_string())], "authn_id lands in the meta");
}

impl Client<TcpStream> {
    async fn envelope_done(&mut self) {
        assert!(self.cmd("DATA").await.starts_with("354"));
        assert!(self.cmd("Subject: relayed\r\n\r\nx\r\n.").await.starts_with("250"));
    }
}

#[tokio::test]
async fn every_limit_one_past_its_edge() {
    let s = server(|c| {
        c.max_message_size = 5000;
        c.max_recipients_per_message = 3;
        c.max_connections = 2;
        c.client_timeout = Duration::from_millis(500);
    })
    .await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    // Lines of 998 and 999/1000/1001 octets (before CRLF).
    for (len, ok) in [(998, true), (999, false), (1000, false), (1001, false)] {
        c.envelope("r@d.example").await;
        let answer = c.cmd(&format!("{}\r\n.", "a".repeat(len))).await;
        assert_eq!(answer.starts_with("250 "), ok, "line of {len}: {answer}");
        if !ok {
            assert!(answer.starts_with("500 5.5.2"), "{answer}");
        }
    }
    // One byte over the size (the message is 5001 octets with its CRLFs).
    c.envelope("r@d.example").await;
    let body = format!("{}\r\n", "b".repeat(98)).repeat(50);
    let over = format!("{body}x");
    assert!(c.cmd(&format!("{over}\r\n.")).await.starts_with("552 5.3.4"));
    // max_recipients_per_message + 1.
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    for i in 0..3 {
        assert!(c.cmd(&format!("RCPT TO:<r{i}@d.example>")).await.starts_with("250"));
    }
    assert!(c.cmd("RCPT TO:<r3@d.example>").await.starts_with("452 4.5.3"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert_eq!(spooled(&s).await, 1, "only the 998-octet message");

    // max_connections + 1: c and d are in; e is turned away.
    let _d = connect_from(&s, "127.0.0.1").await;
    let mut e = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 128];
    let n = e.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("421 4.3.2"));

    // A client idle past client_timeout is told and dropped; its partial
    // message is not spooled.
    c.envelope("r@d.example").await;
    c.stream.write_all(b"Subject: partial\r\n\r\nhalf a mess").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let answer = c.reply().await;
    assert!(answer.starts_with("421 4.4.2"), "{answer}");
    assert_eq!(spooled(&s).await, 1);
}

#[tokio::test]
async fn bad_bytes_in_commands_get_501_and_the_session_survives() {
    let s = server(|_| {}).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.stream.write_all(b"EHLO \xff\xfe\r\n").await.unwrap();
    assert!(c.reply().await.starts_with("501"));
    c.stream.write_all(b"HELO a\0b\r\n").await.unwrap();
    assert!(c.reply().await.starts_with("501"));
    assert!(c.cmd("EHLO ok.test").await.contains("SMTPUTF8"));
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<josé@d.example>").await.starts_with("553 5.6.7"), "UTF-8 needs SMTPUTF8");
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@s.example> SMTPUTF8").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<josé@d.example>").await.starts_with("250"));
}

/// The real spool, with a switch that makes its writes fail the way a full
/// disk does (fault injection: a full disk cannot be made safely in a test).
struct FaultySpool {
    inner: RocksSpool,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Spool for FaultySpool {
    async fn store(&self, messages: &[Message]) -> Result<(), petrel_spool::SpoolError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(petrel_spool::SpoolError::Storage("No space left on device".into()));
        }
        self.inner.store(messages).await
    }
    async fn update_meta(&self, m: &Message) -> Result<(), petrel_spool::SpoolError> {
        self.inner.update_meta(m).await
    }
    async fn remove(&self, id: petrel_message::SpoolId) -> Result<(), petrel_spool::SpoolError> {
        self.inner.remove(id).await
    }
    fn remove_later(&self, id: petrel_message::SpoolId) {
        self.inner.remove_later(id)
    }
    async fn load_meta(&self, id: petrel_message::SpoolId) -> Result<Message, petrel_spool::SpoolError> {
        self.inner.load_meta(id).await
    }
    async fn load_data(&self, id: petrel_message::SpoolId) -> Result<Arc<[u8]>, petrel_spool::SpoolError> {
        self.inner.load_data(id).await
    }
    fn is_healthy(&self) -> bool {
        !self.failing.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn enumerate(&self) -> Result<Vec<Message>, petrel_spool::SpoolError> {
        self.inner.enumerate()
    }
}

#[tokio::test]
async fn a_spool_that_cannot_write_defers_new_mail_and_harms_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let inner = RocksSpool::open(&SpoolPaths { meta: dir.path().into(), data: dir.path().into() }).unwrap();
    let spool = Arc::new(FaultySpool { inner, failing: false.into() });
    let (addr, _guard) = listen(spool.clone(), ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test")).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut c = Client { stream, pending: Vec::new() };
    assert!(c.reply().await.starts_with("220"));
    c.cmd("EHLO client.test").await;
    c.envelope("first@d.example").await;
    assert!(c.cmd("Subject: 1\r\n\r\nx\r\n.").await.starts_with("250"));

    c.envelope("second@d.example").await;
    spool.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!spool.is_healthy());
    assert!(c.cmd("Subject: 2\r\n\r\nx\r\n.").await.starts_with("452 4.3.1"), "deferred, never acknowledged");
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("452 4.3.1"), "refused up front while unhealthy");
    let kept = spool.enumerate().unwrap();
    assert_eq!(kept.len(), 1, "the acknowledged message is intact");
    assert_eq!(kept[0].recipient.email(), "first@d.example");

    spool.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    c.envelope("third@d.example").await;
    assert!(c.cmd("Subject: 3\r\n\r\nx\r\n.").await.starts_with("250"), "accepting again once the spool writes");
    assert_eq!(spool.enumerate().unwrap().len(), 2);
}

#[tokio::test]
async fn a_session_past_max_messages_per_connection_is_closed() {
    let s = server(|c| c.max_messages_per_connection = 2).await;
    let mut c = connect_from(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    for _ in 0..2 {
        c.envelope("r@d.example").await;
        assert!(c.cmd("Subject: x\r\n\r\nx\r\n.").await.starts_with("250"));
    }
    assert!(c.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<r@d.example>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("421 4.7.0"));
    assert_eq!(c.reply().await, "", "the server closed the connection");
    assert_eq!(spooled(&s).await, 2);
}
