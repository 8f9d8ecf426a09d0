//! The listener over real sockets with a real spool: replies and what ends
//! up spooled for each kind of client behaviour.

use petrel_queue::{Intake, QueueConfig, QueueManager};
use petrel_smtp_server::{AcceptAll, Listener, ListenerConfig, ServerHandles};
use petrel_spool::{RocksSpool, Spool, SpoolPaths};
use petrel_telemetry::Logger;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

struct Server {
    addr: SocketAddr,
    spool: Arc<dyn Spool>,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn server(configure: impl FnOnce(&mut ListenerConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> =
        Arc::new(RocksSpool::open(&SpoolPaths { meta: dir.path().into(), data: dir.path().into() }).unwrap());
    let shutdown = CancellationToken::new();
    let (queues, due) =
        QueueManager::new(Arc::new(QueueConfig::default()), spool.clone(), Logger::disabled(), shutdown.clone());
    std::mem::forget(due); // nothing is delivered in these tests
    let intake = Intake::new(spool.clone(), queues, Logger::disabled());
    let handles = Arc::new(ServerHandles { intake, policy: Arc::new(AcceptAll) });
    let mut config = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test");
    configure(&mut config);
    let listener = Listener::start(config, handles, &shutdown).await.unwrap();
    Server { addr: listener.local_addr(), spool, _dir: dir, _shutdown: shutdown.drop_guard() }
}

struct Client {
    stream: TcpStream,
}

impl Client {
    async fn connect(server: &Server, from: &str) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut client = Client { stream: socket.connect(server.addr).await.unwrap() };
        assert!(client.read().await.starts_with("220 "));
        client
    }

    async fn read(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut b = [0u8; 4096];
            let n = self.stream.read(&mut b).await.unwrap();
            assert!(n > 0, "server closed; got so far {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&b[..n]);
            // A complete reply ends with a line "ddd text\r\n".
            let text = String::from_utf8_lossy(&out).to_string();
            let last = text.strip_suffix("\r\n").and_then(|t| t.rsplit("\r\n").next());
            if last.is_some_and(|l| l.len() >= 4 && l.as_bytes()[3] == b' ') {
                return text;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> String {
        self.stream.write_all(bytes).await.unwrap();
        self.read().await
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await
    }
}

#[tokio::test]
async fn one_message_per_recipient_is_spooled_before_250() {
    let s = server(|_| {}).await;
    let mut c = Client::connect(&s, "127.0.0.1").await;
    let ehlo = c.cmd("EHLO client.test").await;
    for ext in ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    // Pipelined envelope: four replies in order.
    c.stream.write_all(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@z.test>\r\nDATA\r\n").await.unwrap();
    let mut replies = String::new();
    while replies.matches("\r\n").count() < 4 {
        replies.push_str(&c.read().await);
    }
    assert!(replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"), "{replies}");
    let done = c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(done.starts_with("250 2.0.0 OK ids="), "{done}");
    let spooled = s.spool.enumerate().unwrap();
    assert_eq!(spooled.len(), 2);
    let mut rcpts: Vec<_> = spooled.iter().map(|m| m.recipient.email().to_string()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["b@y.test", "c@z.test"]);
    let body = s.spool.load_data(spooled[0].id).await.unwrap();
    // Both copies name the reception's first message, then the trace header.
    let first = spooled.iter().map(|m| m.id).min().unwrap();
    let text = String::from_utf8_lossy(&body).to_string();
    let reference = format!("X-Petrel-Id: {first}\r\nReceived: from client.test (127.0.0.1) by mx.test");
    assert!(text.starts_with(&reference), "{text}");
    assert!(body.ends_with(b"Subject: hi\r\n\r\nhello\r\n"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

#[tokio::test]
async fn non_relay_client_is_refused_at_rcpt() {
    let s = server(|_| {}).await;
    let mut c = Client::connect(&s, "127.0.0.9").await;
    c.cmd("EHLO outsider.test").await;
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<victim@elsewhere.test>").await.starts_with("550 5.7.1"));
    assert!(c.cmd("DATA").await.starts_with("554"));
    assert!(s.spool.enumerate().unwrap().is_empty());
}

async fn start(c: &mut Client) {
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@y.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
}

#[tokio::test]
async fn bare_line_endings_and_limits_get_rfc_replies() {
    let s = server(|c| {
        c.max_message_size = 2000;
        c.max_recipients_per_message = 2;
    })
    .await;
    let mut c = Client::connect(&s, "127.0.0.1").await;
    c.cmd("EHLO client.test").await;
    start(&mut c).await;
    assert!(c.send(b"Subject: x\r\n\r\nbare\nLF\r\n.\r\n").await.starts_with("550 5.6.0"));
    start(&mut c).await;
    assert!(c.send(b"Subject: x\r\n\r\nsmuggle\n.\nMAIL FROM:<e@x>\r\n.\r\n").await.starts_with("550 5.6.0"));
    start(&mut c).await;
    let long = format!("{}\r\n.\r\n", "a".repeat(999));
    assert!(c.send(long.as_bytes()).await.starts_with("500 5.5.2"));
    start(&mut c).await;
    let big = format!("{}\r\n.\r\n", "a\r\n".repeat(700));
    assert!(c.send(big.as_bytes()).await.starts_with("552 5.3.4"));
    assert!(c.cmd("MAIL FROM:<a@x.test> SIZE=2001").await.starts_with("552 5.3.4"));
    assert!(c.cmd("MAIL FROM:<a@x.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<1@y.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<2@y.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<3@y.test>").await.starts_with("452 4.5.3"));
    assert!(c.cmd(&format!("NOOP {}", "x".repeat(600))).await.starts_with("500 5.5.2"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(s.spool.enumerate().unwrap().is_empty(), "nothing refused was spooled");
}
