//! Shared harness for the listener's socket tests: a test policy, a
//! listener over a real spool, and a raw SMTP client.
#![allow(dead_code, unused_imports)]

pub use async_trait::async_trait;
pub use base64::Engine;
pub use petrel_message::Message;
pub use petrel_queue::{QueueConfig, QueueManager};
pub use petrel_smtp_server::{
    ConnMeta, Listener, ListenerConfig, ListenerDomain, PolicyError, ServerHandles, SessionPolicy,
};
pub use petrel_spool::{RocksSpool, Spool, SpoolPaths};
pub use petrel_telemetry::Logger;
pub use rustls::pki_types::{CertificateDer, ServerName};
pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::time::Duration;
pub use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
pub use tokio::net::{TcpSocket, TcpStream};
pub use tokio_util::sync::CancellationToken;

/// AUTH accepts user/pw; `inbound.example` is a domain anyone may send to.
pub struct TestPolicy;

#[async_trait]
impl SessionPolicy for TestPolicy {
    async fn listener_domain(
        &self,
        domain: &str,
        _: &str,
        _: &ConnMeta,
    ) -> Result<Option<ListenerDomain>, PolicyError> {
        Ok((domain == "inbound.example").then(|| ListenerDomain { relay_to: true, ..Default::default() }))
    }
    async fn auth_plain(&self, _: &str, authc: &str, password: &str, _: &ConnMeta) -> Result<bool, PolicyError> {
        Ok(authc == "user" && password == "pw")
    }
    async fn message_received(&self, _: &mut Message, _: &ConnMeta) -> Result<(), PolicyError> {
        Ok(())
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub spool: Arc<dyn Spool>,
    pub cert: CertificateDer<'static>,
    pub dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

/// A listener over `spool` that never delivers (due messages go nowhere).
pub async fn listen(spool: Arc<dyn Spool>, config: ListenerConfig) -> (SocketAddr, tokio_util::sync::DropGuard) {
    let (listener, guard) = start_listener(spool, config).await;
    (listener.local_addr(), guard)
}

/// The same, keeping the listener itself (to apply new settings).
pub async fn start_listener(spool: Arc<dyn Spool>, config: ListenerConfig) -> (Listener, tokio_util::sync::DropGuard) {
    let shutdown = CancellationToken::new();
    let (queues, due) =
        QueueManager::new(Arc::new(QueueConfig::default()), spool.clone(), Logger::disabled(), shutdown.clone());
    std::mem::forget(due);
    let intake = petrel_queue::Intake::new(spool, queues, Logger::disabled());
    let handles = Arc::new(ServerHandles { intake, policy: Arc::new(TestPolicy) });
    let listener = Listener::start(config, handles, &shutdown).await.unwrap();
    (listener, shutdown.drop_guard())
}

pub async fn server(configure: impl FnOnce(&mut ListenerConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> =
        Arc::new(RocksSpool::open(&SpoolPaths { meta: dir.path().join("s"), data: dir.path().join("s") }).unwrap());
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    let mut config = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test");
    config.tls_certificate = Some(dir.path().join("cert.pem"));
    config.tls_private_key = Some(dir.path().join("key.pem"));
    configure(&mut config);
    let (addr, guard) = listen(spool.clone(), config).await;
    let cert = generated.cert.der().clone();
    Server { addr, spool, cert, dir, _shutdown: guard }
}

/// A raw SMTP client over any stream.
pub struct Client<S> {
    pub stream: S,
    pub pending: Vec<u8>,
}

pub async fn connect_from(server: &Server, from: &str) -> Client<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = Client { stream: socket.connect(server.addr).await.unwrap(), pending: Vec::new() };
    assert!(c.reply().await.starts_with("220 "));
    c
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// One complete reply (possibly multi-line).
    pub async fn reply(&mut self) -> String {
        loop {
            let text = String::from_utf8_lossy(&self.pending).to_string();
            let mut used = 0;
            for line in text.split_inclusive("\r\n") {
                if !line.ends_with("\r\n") {
                    break;
                }
                used += line.len();
                if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                    self.pending.drain(..used);
                    return text[..used].to_string();
                }
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("reply in time")
                .unwrap();
            if n == 0 {
                return String::new();
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.stream.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }

    pub async fn envelope(&mut self, rcpt: &str) {
        assert!(self.cmd("MAIL FROM:<a@s.example>").await.starts_with("250"));
        assert!(self.cmd(&format!("RCPT TO:<{rcpt}>")).await.starts_with("250"));
        assert!(self.cmd("DATA").await.starts_with("354"));
    }
}

pub async fn spooled(server: &Server) -> usize {
    server.spool.enumerate().unwrap().len()
}
