//! SMTP replies: formatting for the server, incremental parsing for the client.

use std::fmt;

/// An RFC 3463 enhanced status code such as `5.7.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (`x.SUBJECT.z`).
    pub subject: u16,
    /// The detail (`x.y.DETAIL`).
    pub detail: u16,
}

impl EnhancedCode {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self { class, subject, detail }
    }

    /// Parse `X.Y.Z` where X is 2, 4 or 5.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(Self { class, subject, detail })
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply, possibly multi-line. `text` holds the lines joined by `\n`
/// without codes; the enhanced code, when present, is kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, when the reply has one.
    pub enhanced: Option<EnhancedCode>,
    /// The text, lines joined with `\n`.
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced code given as text (`"5.1.1"`); an unparsable one is left out.
    pub fn new(code: u16, enhanced: Option<&str>, text: impl Into<String>) -> Self {
        Self { code, enhanced: enhanced.and_then(EnhancedCode::parse), text: text.into() }
    }

    /// A 2xx or 3xx reply.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// A 4xx reply: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// A 5xx reply: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Wire form, one `code-` line per line of text and `code ` on the last.
    /// The reply as sent: one line per `\n` in the text, each cut to fit
    /// RFC 5321's 512 octets (§4.5.3.1.5) and cleared of CR and NUL, so no
    /// text (a policy's, a peer's) can break the framing or a client's
    /// line limit.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 16);
        let lines: Vec<&str> = if self.text.is_empty() { vec![""] } else { self.text.split('\n').collect() };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let start = out.len();
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(enhanced) = self.enhanced {
                out.extend_from_slice(format!("{enhanced} ").as_bytes());
            }
            let room = MAX_REPLY_LINE - 2 - (out.len() - start);
            let clean: String = line.chars().filter(|c| !matches!(c, '\r' | '\0')).collect();
            let mut cut = clean.len().min(room);
            while !clean.is_char_boundary(cut) {
                cut -= 1;
            }
            out.extend_from_slice(&clean.as_bytes()[..cut]);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// RFC 5321 §4.5.3.1.5: a reply line, code and CRLF included.
pub const MAX_REPLY_LINE: usize = 512;

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        write!(f, " {}", self.text.replace('\n', " "))
    }
}

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not `NNN text` or `NNN-text`, or the codes of a multi-line reply differ.
    #[error("malformed reply line")]
    Malformed,
    /// A line or a reply longer than this many bytes.
    #[error("reply longer than {0} octets")]
    TooLong(usize),
}

/// Longest reply we buffer; a peer sending more is broken or hostile.
const MAX_REPLY: usize = 64 * 1024;

/// Parse one complete reply from the front of `buf`. Returns `Ok(None)` when
/// more bytes are needed, else the reply and how many bytes it used.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut enhanced = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_REPLY { Err(ReplyError::TooLong(MAX_REPLY)) } else { Ok(None) };
        };
        let raw = &buf[pos..pos + nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed);
        }
        let this_code: u16 = std::str::from_utf8(&line[..3])
            .map_err(|_| ReplyError::Malformed)?
            .parse()
            .map_err(|_| ReplyError::Malformed)?;
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReplyError::Malformed);
        }
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(ReplyError::Malformed),
        };
        let mut text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
        // The enhanced code leads each line; keep the first, strip them all.
        let (first, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        if let Some((e, rest)) = EnhancedCode::parse(first).map(|e| (e, rest.to_string())) {
            enhanced.get_or_insert(e);
            text = rest;
        }
        lines.push(text);
        if last {
            let reply = Reply { code: this_code, enhanced, text: lines.join("\n") };
            return Ok(Some((reply, pos)));
        }
        if pos > MAX_REPLY {
            return Err(ReplyError::TooLong(MAX_REPLY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_multiline() {
        let reply = Reply::new(250, Some("2.0.0"), "first\nsecond");
        let wire = reply.to_wire();
        assert_eq!(wire, b"250-2.0.0 first\r\n250 2.0.0 second\r\n");
        let (parsed, used) = parse_reply(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(parsed, reply);
    }

    #[test]
    fn no_reply_line_exceeds_512_octets_or_carries_cr() {
        let long = format!("OK {}\nx\r\0y", "é".repeat(600));
        let wire = Reply::new(250, Some("2.0.0"), long).to_wire();
        let text = String::from_utf8(wire).expect("cut at a character boundary");
        let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines.iter().all(|l| l.len() <= MAX_REPLY_LINE),
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(lines[1], "250 2.0.0 xy\r\n");
    }

    #[test]
    fn partial_and_pipelined() {
        assert_eq!(parse_reply(b"250-a\r\n250 b").unwrap(), None);
        let buf = b"250 ok\r\n354 go\r\n";
        let (first, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(first.code, 250);
        let (second, _) = parse_reply(&buf[used..]).unwrap().unwrap();
        assert_eq!(second.code, 354);
        assert_eq!(second.enhanced, None);
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_reply(b"25 x\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"250-a\r\n251 b\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"250x\r\n"), Err(ReplyError::Malformed));
        let (bare, _) = parse_reply(b"220\r\n").unwrap().unwrap();
        assert_eq!(bare.code, 220);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_reply(&buf);
        }

        /// What we write, we read back, however it is split into lines.
        #[test]
        fn wire_round_trip(code in 200u16..600, lines in proptest::collection::vec("[ -~]{0,40}", 1..5)) {
            let reply = Reply::new(code, None, lines.join("\n").trim_start_matches(|c: char| c.is_ascii_digit()));
            let wire = reply.to_wire();
            let (parsed, used) = parse_reply(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(parsed.code, code);
        }
    }
}
