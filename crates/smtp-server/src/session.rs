//! One client session: the RFC 5321 command state machine.

use crate::config::ListenerConfig;
use crate::listener::ServerHandles;
use crate::reception::receive;
use petrel_message::EnvelopeAddress;
use petrel_smtp_proto::{Command, DataReceiver, DataStatus, MAX_COMMAND_LINE, Reply, ReversePath, parse_command};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub(crate) struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub config: Arc<ListenerConfig>,
    pub handles: Arc<ServerHandles>,
    pub ehlo: Option<String>,
    pub sender: Option<EnvelopeAddress>,
    pub recipients: Vec<EnvelopeAddress>,
}

enum Line {
    Command(Vec<u8>),
    TooLong,
    Closed,
}

fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
    Reply::new(code, Some(enhanced), text)
}

impl Session {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        config: Arc<ListenerConfig>,
        handles: Arc<ServerHandles>,
    ) -> Self {
        // Replies are batched by hand; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Self {
            out: Vec::with_capacity(512),
            stream,
            buf: Vec::with_capacity(4096),
            peer,
            local,
            config,
            handles,
            ehlo: None,
            sender: None,
            recipients: Vec::new(),
        }
    }

    pub async fn run(mut self, stop: CancellationToken) -> std::io::Result<()> {
        let result = self.serve(stop).await;
        let flushed = self.flush().await;
        result.and(flushed)
    }

    async fn serve(&mut self, stop: CancellationToken) -> std::io::Result<()> {
        let banner = format!("{} Petrel ESMTP ready", self.config.hostname);
        self.send(&Reply::new(220, None, banner)).await?;
        loop {
            let line = tokio::select! {
                line = self.read_line() => line?,
                _ = stop.cancelled() => {
                    self.send(&reply(421, "4.3.2", "Service shutting down")).await?;
                    return Ok(());
                }
            };
            let line = match line {
                Line::Command(line) => line,
                Line::TooLong => {
                    self.send(&reply(500, "5.5.2", "Line too long")).await?;
                    continue;
                }
                Line::Closed => return Ok(()),
            };
            let response = match parse_command(&line) {
                Ok(Command::Quit) => {
                    self.send(&reply(221, "2.0.0", "Bye")).await?;
                    return Ok(());
                }
                Ok(Command::Data) => self.data().await?,
                Ok(command) => self.command(command),
                Err(e) => {
                    let (code, enhanced) = e.code();
                    reply(code, enhanced, &e.to_string())
                }
            };
            self.send(&response).await?;
        }
    }

    fn command(&mut self, command: Command) -> Reply {
        match command {
            Command::Ehlo(domain) => {
                self.reset();
                self.ehlo = Some(domain);
                let text = format!(
                    "{} greets {}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES",
                    self.config.hostname,
                    self.ehlo.as_deref().unwrap_or(""),
                    self.config.max_message_size
                );
                Reply::new(250, None, text)
            }
            Command::Helo(domain) => {
                self.reset();
                self.ehlo = Some(domain);
                Reply::new(250, None, self.config.hostname.clone())
            }
            Command::MailFrom { path, params } => self.mail(path, params),
            Command::RcptTo { path, .. } => self.rcpt(path),
            Command::Rset => {
                self.reset();
                reply(250, "2.0.0", "OK")
            }
            Command::Noop => reply(250, "2.0.0", "OK"),
            Command::Vrfy(_) => reply(252, "2.5.0", "Cannot VRFY user, but will accept message"),
            Command::Help => reply(214, "2.0.0", "See RFC 5321"),
            Command::StartTls => reply(454, "4.7.0", "TLS not available"),
            Command::Auth { .. } => reply(502, "5.5.1", "AUTH not available"),
            Command::Lhlo(_) => reply(500, "5.5.1", "This is an SMTP server, not LMTP"),
            Command::Data | Command::Quit => unreachable!("handled by the caller"),
        }
    }

    fn reset(&mut self) {
        self.sender = None;
        self.recipients.clear();
    }

    fn mail(&mut self, path: ReversePath, params: Vec<petrel_smtp_proto::EsmtpParam>) -> Reply {
        if self.ehlo.is_none() {
            return reply(503, "5.5.1", "Say EHLO first");
        }
        if self.sender.is_some() {
            return reply(503, "5.5.1", "Sender already given");
        }
        for param in &params {
            match (param.keyword.as_str(), param.value.as_deref()) {
                ("SIZE", Some(size)) => match size.parse::<u64>() {
                    Ok(n) if n > self.config.max_message_size as u64 => {
                        return reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
                    }
                    Ok(_) => {}
                    Err(_) => return reply(501, "5.5.4", "Invalid SIZE parameter"),
                },
                ("BODY", Some(body)) if body.eq_ignore_ascii_case("8BITMIME") || body.eq_ignore_ascii_case("7BIT") => {}
                _ => return reply(555, "5.5.4", &format!("Unsupported parameter {}", param.keyword)),
            }
        }
        let sender = match path {
            ReversePath::Null => EnvelopeAddress::null(),
            ReversePath::Mailbox(m) => match EnvelopeAddress::parse(&m.to_string()) {
                Ok(a) => a,
                Err(e) => return reply(501, "5.1.7", &e.to_string()),
            },
        };
        self.sender = Some(sender);
        reply(250, "2.1.0", "OK")
    }

    fn rcpt(&mut self, path: petrel_smtp_proto::Mailbox) -> Reply {
        if self.sender.is_none() {
            return reply(503, "5.5.1", "Need MAIL before RCPT");
        }
        if !self.config.may_relay(self.peer.ip()) {
            return reply(550, "5.7.1", "Relaying denied");
        }
        if self.recipients.len() >= self.config.max_recipients_per_message {
            return reply(452, "4.5.3", "Too many recipients");
        }
        match EnvelopeAddress::parse(&path.to_string()) {
            Ok(a) => {
                self.recipients.push(a);
                reply(250, "2.1.5", "OK")
            }
            Err(e) => reply(501, "5.1.3", &e.to_string()),
        }
    }

    async fn data(&mut self) -> std::io::Result<Reply> {
        if self.sender.is_none() {
            return Ok(reply(503, "5.5.1", "Need MAIL before DATA"));
        }
        if self.recipients.is_empty() {
            return Ok(reply(554, "5.5.1", "No valid recipients"));
        }
        self.send(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")).await?;
        let mut rx = DataReceiver::new(self.config.max_message_size);
        loop {
            if let DataStatus::Done(used) = rx.feed(&self.buf) {
                self.buf.drain(..used);
                break;
            }
            self.buf.clear();
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let result = match rx.finish() {
            Ok(data) => receive(self, data).await,
            Err(e) => {
                let (code, enhanced) = e.reply_parts();
                reply(code, enhanced, &e.to_string())
            }
        };
        self.reset();
        Ok(result)
    }

    async fn read_line(&mut self) -> std::io::Result<Line> {
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
                return Ok(Line::Command(line));
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_COMMAND_LINE * 8 {
                // Keep memory bounded: discard, and the line is too long.
                self.buf.clear();
                self.skip_to_newline().await?;
                return Ok(Line::TooLong);
            }
            if self.fill().await? == 0 {
                return Ok(Line::Closed);
            }
        }
    }

    async fn skip_to_newline(&mut self) -> std::io::Result<()> {
        loop {
            if self.fill().await? == 0 {
                return Ok(());
            }
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                self.buf.drain(..=pos);
                return Ok(());
            }
            self.buf.clear();
        }
    }

    /// Read more from the client. Replies queued for pipelined commands go
    /// out first, together, so a pipelined batch costs one write.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.flush().await?;
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(self.config.client_timeout, self.stream.read(&mut chunk)).await;
        let n = read.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client timed out"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Queue a reply; it is written before the next read or at the end.
    pub async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        self.out.extend_from_slice(&reply.to_wire());
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}
