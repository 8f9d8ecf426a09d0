//! A recording SMTP sink.

use parking_lot::Mutex;
use petrel_smtp_proto::{Command, DataReceiver, DataStatus, ReversePath, parse_command};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A message as the sink saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The client's address (which source the message came from).
    pub peer: SocketAddr,
    /// The EHLO name it gave.
    pub ehlo: String,
    /// MAIL FROM.
    pub sender: String,
    /// RCPT TO, in order.
    pub recipients: Vec<String>,
    /// The body as received.
    pub data: Vec<u8>,
    /// TLS protocol version when the message came over STARTTLS.
    pub tls: Option<String>,
    /// Which DATA transaction carried it (recipients of one transaction
    /// are recorded one entry each, with the same number).
    pub transaction: usize,
    /// When its end of data arrived.
    pub at: std::time::Instant,
}

/// Decides the reply at the end of DATA: given the message and how many
/// times this recipient has been attempted (1 for the first), returns the
/// code and text. Only messages answered 2xx are recorded as received.
pub type ReplyScript = Arc<dyn Fn(&Received, usize) -> (u16, String) + Send + Sync>;

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    attempts: Mutex<HashMap<String, usize>>,
    connections: Mutex<HashMap<IpAddr, (usize, usize)>>, // peer ip → (now, max)
    all_connections: Mutex<(usize, usize)>,              // (now, max) from every peer
    total_connections: AtomicUsize,
    transactions: AtomicUsize,
    /// Wait this long before answering the end of data.
    delay_ms: AtomicUsize,
    /// Advertise neither 8BITMIME nor SMTPUTF8 (an old 7-bit server).
    seven_bit: std::sync::atomic::AtomicBool,
    /// Every MAIL FROM line as sent, for checking parameters.
    mail_lines: Mutex<Vec<String>>,
    /// Sessions that greeted with LHLO.
    lmtp_sessions: AtomicUsize,
    /// Hang up right after answering each message, without a 421 (as a
    /// server that drops idle clients does).
    hang_up_after_data: std::sync::atomic::AtomicBool,
}

/// An SMTP server on loopback that records what it receives.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// A sink on 127.0.0.1 with a kernel-chosen port that accepts everything.
    pub async fn start() -> Sink {
        Self::start_with(Arc::new(|_, _| (250, "2.0.0 ok".into()))).await
    }

    /// A sink that answers as `script` says.
    pub async fn start_with(script: ReplyScript) -> Sink {
        Self::start_at("127.0.0.1:0".parse().unwrap(), script).await
    }

    /// Listen on a given address (to bring a stopped sink back on its port).
    pub async fn start_at(addr: SocketAddr, script: ReplyScript) -> Sink {
        Self::launch(addr, script, None).await
    }

    /// A sink that offers neither 8BITMIME nor SMTPUTF8, as an old
    /// server would: what it receives shows how Petrel downgrades.
    pub async fn start_seven_bit() -> Sink {
        let sink = Self::start().await;
        sink.state.seven_bit.store(true, Ordering::SeqCst);
        sink
    }

    /// From now on, close each connection right after answering a message.
    pub fn set_hang_up_after_data(&self, on: bool) {
        self.state.hang_up_after_data.store(on, Ordering::SeqCst);
    }

    /// How many sessions greeted with LHLO (LMTP).
    pub fn lmtp_sessions(&self) -> usize {
        self.state.lmtp_sessions.load(Ordering::SeqCst)
    }

    /// The MAIL FROM command lines received, parameters included.
    pub fn mail_lines(&self) -> Vec<String> {
        self.state.mail_lines.lock().clone()
    }

    /// A sink that offers STARTTLS with a freshly generated self-signed
    /// certificate for `localhost`.
    pub async fn start_tls(script: ReplyScript) -> Sink {
        Self::launch("127.0.0.1:0".parse().unwrap(), script, Some(self_signed_acceptor())).await
    }

    /// Like [`Sink::start_at`], but a port in use is an error, not a panic.
    pub async fn try_start_at(addr: SocketAddr, script: ReplyScript) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve_on(listener, script, None))
    }

    async fn launch(addr: SocketAddr, script: ReplyScript, tls: Option<TlsAcceptor>) -> Sink {
        let listener = TcpListener::bind(addr).await.expect("sink bind");
        Self::serve_on(listener, script, tls)
    }

    fn serve_on(listener: TcpListener, script: ReplyScript, tls: Option<TlsAcceptor>) -> Sink {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (st, script, tls) = (st.clone(), script.clone(), tls.clone());
                tokio::spawn(async move {
                    st.total_connections.fetch_add(1, Ordering::SeqCst);
                    {
                        let mut map = st.connections.lock();
                        let entry = map.entry(peer.ip()).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(entry.0);
                        let mut all = st.all_connections.lock();
                        all.0 += 1;
                        all.1 = all.1.max(all.0);
                    }
                    let _ = serve(stream, peer, &st, &script, tls).await;
                    st.connections.lock().get_mut(&peer.ip()).unwrap().0 -= 1;
                    st.all_connections.lock().0 -= 1;
                });
            }
        });
        Sink { addr, state, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer the end of data only after `delay` (a slow receiver).
    pub fn set_reply_delay(&self, delay: std::time::Duration) {
        self.state.delay_ms.store(delay.as_millis() as usize, Ordering::SeqCst);
    }

    /// DATA transactions seen (accepted or not).
    pub fn transactions(&self) -> usize {
        self.state.transactions.load(Ordering::SeqCst)
    }

    /// Messages answered with 2xx, one entry per recipient, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().clone()
    }

    /// Messages received so far.
    pub fn received_count(&self) -> usize {
        self.state.received.lock().len()
    }

    /// How many DATA attempts a recipient has had.
    pub fn attempts(&self, recipient: &str) -> usize {
        self.state.attempts.lock().get(recipient).copied().unwrap_or(0)
    }

    /// The most connections one peer address ever had open at once.
    pub fn max_concurrent_from(&self, ip: IpAddr) -> usize {
        self.state.connections.lock().get(&ip).map_or(0, |c| c.1)
    }

    /// The most connections open at once, from all peers together.
    pub fn max_concurrent(&self) -> usize {
        self.state.all_connections.lock().1
    }

    /// Connections accepted so far.
    pub fn total_connections(&self) -> usize {
        self.state.total_connections.load(Ordering::SeqCst)
    }

    /// Stop listening (connections in progress are cut). Returns the address
    /// so the test can bring the sink back with [`Sink::start_at`].
    pub fn stop(self) -> SocketAddr {
        self.addr
    }
}

/// Generate a certificate for `localhost` and a TLS 1.2+ acceptor for it.
fn self_signed_acceptor() -> TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("certificate");
    TlsAcceptor::from(Arc::new(config))
}

enum End {
    Closed,
    StartTls,
}

struct Conn<'a> {
    peer: SocketAddr,
    state: &'a State,
    script: &'a ReplyScript,
    offer_tls: bool,
    tls: Option<String>,
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: &State,
    script: &ReplyScript,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut conn = Conn { peer, state, script, offer_tls: tls.is_some(), tls: None };
    let mut buf = Vec::new();
    if let (End::StartTls, Some(acceptor)) = (session(&mut stream, &mut buf, &conn).await?, tls) {
        let mut secured = acceptor.accept(stream).await?;
        conn.tls = secured.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
        conn.offer_tls = false;
        let mut buf = Vec::new();
        session(&mut secured, &mut buf, &conn).await?;
    }
    Ok(())
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    conn: &Conn<'_>,
) -> std::io::Result<End> {
    let mut ehlo = String::new();
    let mut lmtp = false;
    let mut sender = String::new();
    let mut recipients = Vec::new();
    loop {
        let line = match next_line(stream, buf).await? {
            Some(line) => line,
            None => return Ok(End::Closed),
        };
        let reply: Vec<u8> = match parse_command(&line) {
            Ok(Command::Ehlo(name) | Command::Lhlo(name)) => {
                lmtp = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"LHLO");
                if lmtp {
                    conn.state.lmtp_sessions.fetch_add(1, Ordering::SeqCst);
                }
                ehlo = name;
                let tls = if conn.offer_tls { "250-STARTTLS\r\n" } else { "" };
                let eight_bit =
                    if conn.state.seven_bit.load(Ordering::SeqCst) { "" } else { "250-8BITMIME\r\n250-SMTPUTF8\r\n" };
                format!("250-sink.test\r\n{tls}250-PIPELINING\r\n{eight_bit}250 SIZE 100000000\r\n").into_bytes()
            }
            Ok(Command::StartTls) if conn.offer_tls => {
                stream.write_all(b"220 2.0.0 go ahead\r\n").await?;
                return Ok(End::StartTls);
            }
            Ok(Command::Helo(name)) => {
                ehlo = name;
                b"250 sink.test\r\n".to_vec()
            }
            Ok(Command::MailFrom { path, .. }) => {
                conn.state.mail_lines.lock().push(String::from_utf8_lossy(&line).into_owned());
                sender = match path {
                    ReversePath::Null => String::new(),
                    ReversePath::Mailbox(m) => m.to_string(),
                };
                recipients.clear();
                b"250 2.1.0 ok\r\n".to_vec()
            }
            Ok(Command::RcptTo { path, .. }) => {
                recipients.push(path.to_string());
                b"250 2.1.5 ok\r\n".to_vec()
            }
            Ok(Command::Data) => {
                stream.write_all(b"354 go ahead\r\n").await?;
                let data = read_data(stream, buf).await?;
                let msg = Received {
                    peer: conn.peer,
                    ehlo: ehlo.clone(),
                    sender: sender.clone(),
                    recipients: recipients.clone(),
                    data,
                    tls: conn.tls.clone(),
                    transaction: conn.state.transactions.fetch_add(1, Ordering::SeqCst),
                    at: std::time::Instant::now(),
                };
                let attempt = {
                    let mut attempts = conn.state.attempts.lock();
                    let mut first = 0;
                    for (i, r) in msg.recipients.iter().enumerate() {
                        let n = attempts.entry(r.clone()).or_default();
                        *n += 1;
                        if i == 0 {
                            first = *n;
                        }
                    }
                    first
                };
                let delay = conn.state.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(delay as u64)).await;
                }
                let (code, text) = (conn.script)(&msg, attempt);
                if (200..300).contains(&code) {
                    let mut received = conn.state.received.lock();
                    for r in &msg.recipients {
                        received.push(Received { recipients: vec![r.clone()], ..msg.clone() });
                    }
                }
                // LMTP answers the end of data once per recipient.
                let answers = if lmtp { recipients.len() } else { 1 };
                recipients.clear();
                let reply = format!("{code} {text}\r\n").repeat(answers).into_bytes();
                if conn.state.hang_up_after_data.load(Ordering::SeqCst) {
                    stream.write_all(&reply).await?;
                    return Ok(End::Closed);
                }
                reply
            }
            Ok(Command::Rset) => {
                recipients.clear();
                b"250 ok\r\n".to_vec()
            }
            Ok(Command::Quit) => {
                stream.write_all(b"221 bye\r\n").await?;
                return Ok(End::Closed);
            }
            Ok(_) => b"250 ok\r\n".to_vec(),
            Err(_) => b"500 unrecognized\r\n".to_vec(),
        };
        stream.write_all(&reply).await?;
    }
}

async fn next_line<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..pos].to_vec();
            buf.drain(..pos + 2);
            return Ok(Some(line));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_data<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut rx = DataReceiver::new(usize::MAX);
    loop {
        if let DataStatus::Done(used) = rx.feed(buf) {
            buf.drain(..used);
            return rx.finish().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        buf.clear();
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
