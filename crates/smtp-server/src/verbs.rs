//! What each command does.

use crate::auth::auth;
use crate::io::ConnError;
use crate::reception::receive;
use crate::replies::{insufficient_storage, policy_reply, reply};
use crate::session::{Flow, Session};
use petrel_message::EnvelopeAddress;
use petrel_smtp_proto::{Command, EsmtpParam, Mailbox, Reply, ReversePath, parse_command};

impl Session {
    pub(crate) async fn handle(&mut self, line: &[u8]) -> Result<Flow, ConnError> {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(e) => {
                let (code, enhanced) = e.code();
                self.conn.send(&reply(code, enhanced, &e.to_string()));
                return Ok(Flow::Continue);
            }
        };
        if matches!(command, Command::Noop | Command::Rset | Command::Vrfy(_) | Command::Help)
            || (matches!(command, Command::Ehlo(_) | Command::Helo(_)) && self.ehlo.is_some())
        {
            self.junk += 1;
            if self.junk > self.config.max_junk_commands {
                self.conn.send(&reply(421, "4.7.0", "Too many commands without mail; closing"));
                return Ok(Flow::Close);
            }
        }
        let response = match command {
            Command::Quit => {
                self.conn.send(&reply(221, "2.0.0", "Bye"));
                return Ok(Flow::Close);
            }
            Command::Data => return self.data().await,
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => auth(self, &mechanism, initial).await?,
            Command::Ehlo(domain) => self.hello(domain, true).await,
            Command::Helo(domain) => self.hello(domain, false).await,
            Command::MailFrom { path, params } => self.mail(path, params).await,
            Command::RcptTo { path, params } => match params.first() {
                // No RCPT extension (DSN's NOTIFY, ORCPT) is offered.
                Some(p) => reply(555, "5.5.4", &format!("Unsupported parameter {}", p.keyword)),
                None => self.rcpt(path).await,
            },
            Command::Rset => {
                self.reset();
                reply(250, "2.0.0", "OK")
            }
            Command::Noop => reply(250, "2.0.0", "OK"),
            Command::Vrfy(_) => reply(252, "2.5.0", "Cannot VRFY user, but will accept message"),
            Command::Help => reply(214, "2.0.0", "See RFC 5321"),
            Command::Lhlo(_) => reply(500, "5.5.1", "This is an SMTP server, not LMTP"),
        };
        self.conn.send(&response);
        Ok(Flow::Continue)
    }

    /// AUTH is offered once the session is encrypted, or in clear to a
    /// client on this host (127.0.0.1 or ::1 exactly).
    pub(crate) fn auth_offered(&self) -> bool {
        let local: [std::net::IpAddr; 2] = [std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()];
        self.conn.is_tls() || local.contains(&self.peer.ip())
    }

    async fn hello(&mut self, domain: String, extended: bool) -> Reply {
        let conn = crate::config::ConnMeta { ehlo_domain: Some(domain.clone()), ..self.conn_meta() };
        if let Err(e) = self.handles.policy.ehlo(&domain, &conn).await {
            return policy_reply(e, "smtp_server_ehlo", self.peer);
        }
        self.reset();
        self.ehlo = Some(domain);
        if !extended {
            return Reply::new(250, None, self.config.hostname.clone());
        }
        let mut lines = vec![
            format!("{} greets {}", self.config.hostname, self.ehlo.as_deref().unwrap_or("")),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if !self.conn.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply::new(250, None, lines.join("\n"))
    }

    async fn starttls(&mut self) -> Result<Flow, ConnError> {
        if self.conn.is_tls() {
            self.conn.send(&reply(503, "5.5.1", "TLS already active"));
            return Ok(Flow::Continue);
        }
        self.conn.send(&reply(220, "2.0.0", "Ready to start TLS"));
        let acceptor = self.tls.clone();
        if !self.conn.start_tls(&acceptor).await? {
            tracing::debug!(peer = %self.peer, "TLS handshake failed; closing");
            return Ok(Flow::Close);
        }
        // RFC 3207 §4.2: forget everything learned before TLS.
        self.reset();
        self.ehlo = None;
        self.authn_id = None;
        Ok(Flow::Continue)
    }

    async fn mail(&mut self, path: ReversePath, params: Vec<EsmtpParam>) -> Reply {
        if self.ehlo.is_none() {
            return reply(503, "5.5.1", "Say EHLO first");
        }
        if self.sender.is_some() {
            return reply(503, "5.5.1", "Sender already given");
        }
        if !self.handles.intake.accepting() {
            return insufficient_storage();
        }
        let mut smtputf8 = false;
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
                ("SMTPUTF8", None) => smtputf8 = true,
                _ => return reply(555, "5.5.4", &format!("Unsupported parameter {}", param.keyword)),
            }
        }
        let sender = match path {
            ReversePath::Null => EnvelopeAddress::null(),
            ReversePath::Mailbox(m) => match self.address(&m, smtputf8) {
                Ok(a) => a,
                Err(r) => return r,
            },
        };
        if let Err(e) = self.handles.policy.mail_from(&sender, &self.conn_meta()).await {
            return policy_reply(e, "smtp_server_mail_from", self.peer);
        }
        self.sender = Some(sender);
        self.smtputf8 = smtputf8;
        reply(250, "2.1.0", "OK")
    }

    /// RFC 6531: a UTF-8 address needs the SMTPUTF8 parameter.
    fn address(&self, mailbox: &Mailbox, smtputf8: bool) -> Result<EnvelopeAddress, Reply> {
        let text = mailbox.to_string();
        if !smtputf8 && !text.is_ascii() {
            return Err(reply(553, "5.6.7", "A UTF-8 address needs MAIL FROM with SMTPUTF8"));
        }
        EnvelopeAddress::parse(&text).map_err(|e| reply(501, "5.1.3", &e.to_string()))
    }

    async fn may_relay_to(&self, domain: &str) -> Result<crate::config::Relay, Reply> {
        use crate::config::Relay;
        // Injectors (relay_hosts, authenticated clients) relay without a
        // policy call per recipient; reports come from outside.
        if self.config.may_relay(self.peer.ip()) || self.authn_id.is_some() {
            return Ok(Relay { relay: true, ..Relay::default() });
        }
        let listener = self.local.to_string();
        let conn = self.conn_meta();
        // Inbound: anyone may send to a `relay_to` domain; a domain that
        // logs reports takes them from anyone too.
        let mut relay = match self.handles.policy.listener_domain(domain, &listener, &conn).await {
            Ok(Some(d)) => Relay { relay: d.relay_to, oob: d.log_oob, arf: d.log_arf },
            Ok(None) => Relay::default(),
            Err(e) => return Err(policy_reply(e, "get_listener_domain", self.peer)),
        };
        if relay.relay {
            return Ok(relay);
        }
        // Outbound: the sender's domain lists this client in `relay_from`.
        let Some(sender_domain) = self.sender.as_ref().filter(|s| !s.is_null()).map(|s| s.domain().to_string()) else {
            return Ok(relay);
        };
        match self.handles.policy.listener_domain(&sender_domain, &listener, &conn).await {
            Ok(Some(d)) => relay.relay = d.relay_from.iter().any(|net| net.contains(&self.peer.ip())),
            Ok(None) => {}
            Err(e) => return Err(policy_reply(e, "get_listener_domain", self.peer)),
        }
        Ok(relay)
    }

    async fn rcpt(&mut self, path: Mailbox) -> Reply {
        if self.sender.is_none() {
            return reply(503, "5.5.1", "Need MAIL before RCPT");
        }
        let recipient = match self.address(&path, self.smtputf8) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let relay = match self.may_relay_to(recipient.domain()).await {
            Ok(relay) if relay.relay || relay.takes_reports() => relay,
            Ok(_) => return reply(550, "5.7.1", "Relaying denied"),
            Err(r) => return r,
        };
        if self.recipients.len() >= self.config.max_recipients_per_message {
            return reply(452, "4.5.3", "Too many recipients");
        }
        if let Err(e) = self.handles.policy.rcpt_to(&recipient, &self.conn_meta()).await {
            return policy_reply(e, "smtp_server_rcpt_to", self.peer);
        }
        self.recipients.push(recipient);
        self.relays.push(relay);
        reply(250, "2.1.5", "OK")
    }

    async fn data(&mut self) -> Result<Flow, ConnError> {
        if self.sender.is_none() {
            self.conn.send(&reply(503, "5.5.1", "Need MAIL before DATA"));
            return Ok(Flow::Continue);
        }
        if self.recipients.is_empty() {
            self.conn.send(&reply(554, "5.5.1", "No valid recipients"));
            return Ok(Flow::Continue);
        }
        if self.messages >= self.config.max_messages_per_connection {
            self.conn.send(&reply(421, "4.7.0", "Too many messages on one connection; closing"));
            return Ok(Flow::Close);
        }
        self.conn.send(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
        let verdict = self.conn.read_data(self.config.max_message_size).await?;
        let response = match verdict {
            Ok(data) => {
                self.messages += 1;
                let verdict = receive(self, data).await;
                if verdict.code == 250 {
                    // Like Postfix: the error and junk counts are per
                    // stretch without mail.
                    self.conn.clear_errors();
                    self.junk = 0;
                }
                verdict
            }
            Err(e) => {
                let (code, enhanced) = e.reply_parts();
                reply(code, enhanced, &e.to_string())
            }
        };
        self.reset();
        self.conn.send(&response);
        Ok(Flow::Continue)
    }
}
