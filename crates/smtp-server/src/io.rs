//! The session's connection: buffered reads, batched replies, deadlines,
//! the DATA framing loop, and the switch to TLS.
//!
//! A deadline covers a whole command line (and a whole DATA, stretched by
//! its size at the minimum rate), not each read: a client dripping one byte
//! at a time cannot hold a session open past it.

use petrel_smtp_proto::{DataError, DataReceiver, DataStatus, MAX_COMMAND_LINE, Reply};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while switching to TLS.
    Switching,
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Switching => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Switching => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Switching => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Switching => Poll::Ready(Ok(())),
        }
    }
}

pub(crate) enum Line {
    Command(Vec<u8>),
    TooLong,
    Closed,
}

/// Why a session ends early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("client timed out")]
    Timeout,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    timeout: Duration,
    /// Octets per second DATA must at least arrive at.
    min_data_rate: usize,
    /// 5xx replies sent so far.
    errors: usize,
    /// Copies lines to `petrel trace-smtp-server` while it watches.
    trace: Option<petrel_telemetry::SessionTrace>,
}

impl Conn {
    pub fn new(stream: TcpStream, timeout: Duration, min_data_rate: usize) -> Self {
        // Replies are batched by hand; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Self {
            stream: Stream::Plain(stream),
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(512),
            timeout,
            min_data_rate: min_data_rate.max(1),
            errors: 0,
            trace: None,
        }
    }

    /// Copy this session's lines to `trace` from now on.
    pub fn set_trace(&mut self, trace: Option<petrel_telemetry::SessionTrace>) {
        self.trace = trace;
    }

    /// Note something in the transcript that is not a protocol line
    /// (a message body's size, the TLS handshake).
    pub fn trace_note(&self, direction: &'static str, text: &str) {
        if let Some(trace) = &self.trace {
            trace.emit(direction, text);
        }
    }

    /// How many 5xx replies this session has been sent since it last
    /// delivered a message.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// A message was accepted: the client is doing real work.
    pub fn clear_errors(&mut self) {
        self.errors = 0;
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Queue a reply; it is written before the next read or at the end.
    pub fn send(&mut self, reply: &Reply) {
        if reply.code >= 500 {
            self.errors += 1;
        }
        let start = self.out.len();
        self.out.extend_from_slice(&reply.to_wire());
        if let Some(trace) = &self.trace {
            for line in String::from_utf8_lossy(&self.out[start..]).lines() {
                trace.emit("send", line);
            }
        }
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Read more from the client. Replies queued for pipelined commands go
    /// out first, together, so a pipelined batch costs one write.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ConnError> {
        self.flush().await?;
        let mut chunk = [0u8; 16 * 1024];
        let n =
            tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await.map_err(|_| ConnError::Timeout)??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One command line, which must be complete within the timeout.
    pub async fn read_line(&mut self) -> Result<Line, ConnError> {
        let deadline = Instant::now() + self.timeout;
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() + 2 > MAX_COMMAND_LINE {
                    return Ok(Line::TooLong);
                }
                if let Some(trace) = &self.trace {
                    trace.emit("recv", &String::from_utf8_lossy(&line));
                }
                return Ok(Line::Command(line));
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_COMMAND_LINE * 8 {
                // Keep memory bounded: drop the rest of this line.
                self.buf.clear();
                self.skip_to_newline(deadline).await?;
                return Ok(Line::TooLong);
            }
            if self.fill(deadline).await? == 0 {
                return Ok(Line::Closed);
            }
        }
    }

    async fn skip_to_newline(&mut self, deadline: Instant) -> Result<(), ConnError> {
        loop {
            if self.fill(deadline).await? == 0 {
                return Ok(());
            }
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                self.buf.drain(..=pos);
                return Ok(());
            }
            self.buf.clear();
        }
    }

    /// Read DATA up to the real terminator; the verdict comes with it. No
    /// read may wait longer than the timeout, and the whole DATA must
    /// arrive within the timeout plus its size at the minimum rate.
    pub async fn read_data(&mut self, max_size: usize) -> Result<Result<Vec<u8>, DataError>, ConnError> {
        let mut rx = DataReceiver::new(max_size);
        let start = Instant::now();
        let mut received = 0usize;
        loop {
            if let DataStatus::Done(used) = rx.feed(&self.buf) {
                self.buf.drain(..used);
                let data = rx.finish();
                if let Ok(body) = &data {
                    self.trace_note("recv", &format!("[message body: {} bytes]", body.len()));
                }
                return Ok(data);
            }
            received += self.buf.len();
            self.buf.clear();
            let allowance = Duration::from_secs_f64(received as f64 / self.min_data_rate as f64);
            let deadline = (start + self.timeout + allowance).min(Instant::now() + self.timeout);
            if self.fill(deadline).await? == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// After `220` to STARTTLS: drop whatever the client pipelined behind
    /// the command (it was sent in clear and must not be obeyed), then
    /// complete the handshake. Returns false when the handshake failed.
    pub async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> std::io::Result<bool> {
        self.flush().await?;
        self.buf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Switching) else {
            return Ok(false);
        };
        match tokio::time::timeout(self.timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.trace_note("recv", "[TLS handshake done]");
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// TLS version and cipher, once negotiated.
    pub fn tls_info(&self) -> Option<(String, String)> {
        match &self.stream {
            Stream::Tls(s) => {
                let session = s.get_ref().1;
                let version = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
                let cipher = session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
                Some((version, cipher))
            }
            _ => None,
        }
    }
}
