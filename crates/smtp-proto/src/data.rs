//! The DATA phase as a byte-at-a-time state machine.
//!
//! Only `CRLF . CRLF` ends a message (the first CRLF may be the one that ended
//! the `DATA` command). A bare CR or LF anywhere poisons the message: we keep
//! reading until the real terminator, so whatever a client smuggled behind a
//! `\n.\n` is swallowed as part of the rejected message and never parsed as
//! commands (CVE-2023-51764/5/6). Line and size limits likewise keep reading
//! and reject at the end, so the session stays in step with the client.

/// The end-of-data variants published for SMTP smuggling
/// (CVE-2023-51764/5/6): bare LF and CR forms of `CRLF.CRLF`, with and
/// without NUL. None of them may end DATA; tests and fuzzers use this list.
pub const SMUGGLING_TERMINATORS: [&[u8]; 14] = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r.\n",
    b"\r\n.\r",
    b"\r\n.\n",
    b"\n.\r",
    b"\n\0.\n",
    b"\n.\0\n",
    b"\r\0.\r",
    b"\r\n\0.\r\n",
    b"\r\n.\0\r\n",
    b"\0\n.\r\n",
    b"\r\n.\r\0\n",
];

/// RFC 5321 §4.5.3.1.6: a text line is at most 998 octets before its CRLF.
pub const MAX_LINE: usize = 998;

/// Why a message body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A CR or LF not part of CRLF (RFC 5321 2.3.8).
    #[error("message contains a bare CR or LF")]
    BareLineEnding,
    /// A line over the 998-character limit.
    #[error("message has a line longer than 998 octets")]
    LineTooLong,
    /// More bytes than the listener's `max_message_size`.
    #[error("message exceeds the maximum size of {0} octets")]
    TooLarge(usize),
    /// RFC 5321 §4.5.2 text is printable: a NUL is never relayed.
    #[error("message contains a NUL octet")]
    Nul,
}

impl DataError {
    /// The reply for a rejected message: (code, enhanced code, text).
    pub fn reply_parts(&self) -> (u16, &'static str) {
        match self {
            DataError::BareLineEnding => (550, "5.6.0"),
            DataError::LineTooLong => (500, "5.5.2"),
            DataError::TooLarge(_) => (552, "5.3.4"),
            DataError::Nul => (554, "5.6.0"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Dot,
    DotCr,
    Mid,
    Cr,
}

/// Where a [`DataReceiver`] stands after a `feed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStatus {
    /// All input consumed; the terminator has not been seen yet.
    NeedMore,
    /// The terminator ended at this many bytes into the last input; bytes
    /// after it belong to the next command.
    Done(usize),
}

/// Receives DATA bytes and rebuilds the message (dot-stuffing undone).
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    line_len: usize,
    max_size: usize,
    message: Vec<u8>,
    error: Option<DataError>,
}

impl DataReceiver {
    /// A reader that refuses bodies over `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        Self { state: State::LineStart, line_len: 0, max_size, message: Vec::new(), error: None }
    }

    /// Feed the next bytes from the client.
    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Inside a line, ordinary bytes up to the next CR, LF or NUL
                // are text: take the run at once rather than byte by byte.
                let rest = &input[i..];
                let run = rest.iter().position(|&b| matches!(b, b'\r' | b'\n' | 0)).unwrap_or(rest.len());
                if run > 0 {
                    self.count_line(run);
                    self.push(&rest[..run]);
                    i += run;
                    continue;
                }
            }
            if self.step(input[i]) {
                return DataStatus::Done(i + 1);
            }
            i += 1;
        }
        DataStatus::NeedMore
    }

    /// The message once `Done` was returned, or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.message),
        }
    }

    /// One byte; returns true when the terminator is complete.
    fn step(&mut self, b: u8) -> bool {
        match (self.state, b) {
            (State::LineStart, b'.') => {
                self.count_line(1);
                self.state = State::Dot;
            }
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => return true,
            (State::LineStart | State::Mid, b'\r') => self.state = State::Cr,
            (State::Cr, b'\n') => {
                self.push(b"\r\n");
                self.line_len = 0;
                self.state = State::LineStart;
            }
            (_, b'\n') => self.bare_line_ending(),
            (State::Cr | State::DotCr, _) => {
                // A CR not followed by LF: refuse, and treat this byte as text.
                self.bare_line_ending();
                self.text(b);
            }
            // `..x` → `.x`: the leading dot of a stuffed line is dropped.
            (State::Dot | State::LineStart | State::Mid, _) => self.text(b),
        }
        false
    }

    fn text(&mut self, b: u8) {
        if b == 0 {
            self.fail(DataError::Nul);
        }
        self.count_line(1);
        self.push(&[b]);
        self.state = State::Mid;
    }

    fn bare_line_ending(&mut self) {
        self.fail(DataError::BareLineEnding);
        // A bare line ending does not start a line, so `\n.\n` cannot end DATA.
        self.state = State::Mid;
    }

    fn count_line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > MAX_LINE {
            self.fail(DataError::LineTooLong);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.message.len() + bytes.len() > self.max_size {
            self.fail(DataError::TooLarge(self.max_size));
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    fn fail(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.message = Vec::new();
        }
    }
}

/// Prepare a message for the wire: stuff leading dots, make sure it ends in
/// CRLF, and append the `.` line.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    // Each line (after each LF, and at the start) that begins with a dot
    // gets another one.
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_nul_anywhere_refuses_the_message() {
        for input in [&b"before\0after\r\n.\r\n"[..], b"\0.\r\n.\r\n", b"a\r\n.\0\r\n.\r\n"] {
            let (status, result) = run(input);
            assert_eq!(status, DataStatus::Done(input.len()), "{input:?}");
            assert_eq!(result, Err(DataError::Nul), "{input:?}");
        }
    }

    fn run(input: &[u8]) -> (DataStatus, Result<Vec<u8>, DataError>) {
        let mut rx = DataReceiver::new(1 << 20);
        let status = rx.feed(input);
        (status, rx.finish())
    }

    #[test]
    fn simple_message_and_pipelined_tail() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (status, msg) = run(input);
        assert_eq!(status, DataStatus::Done(input.len() - 6));
        assert_eq!(msg.unwrap(), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn empty_message_ends_at_first_dot_line() {
        assert_eq!(run(b".\r\n"), (DataStatus::Done(3), Ok(Vec::new())));
    }

    #[test]
    fn dot_unstuffing() {
        let (_, msg) = run(b"..leading\r\n.x\r\n.\r\n");
        assert_eq!(msg.unwrap(), b".leading\r\nx\r\n");
    }

    /// Every end-of-data variant published for CVE-2023-51764/5/6: none may
    /// end the message; the message still ends at the real terminator and is
    /// refused, so the smuggled commands are never seen as commands.
    #[test]
    fn smuggling_variants_never_terminate() {
        let variants = SMUGGLING_TERMINATORS;
        for v in variants {
            let mut input = b"Subject: a\r\n\r\nfirst".to_vec();
            input.extend_from_slice(v);
            let smuggled = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n";
            input.extend_from_slice(smuggled);
            let end = input.len();
            input.extend_from_slice(b"\r\n.\r\n");
            let mut rx = DataReceiver::new(1 << 20);
            let status = rx.feed(&input);
            assert_eq!(status, DataStatus::Done(end + 5), "variant {v:?}");
            // Every variant poisons the message: a bare CR or LF, or a NUL.
            assert!(rx.finish().is_err(), "variant {v:?}");
        }
    }

    #[test]
    fn line_limits() {
        for (len, ok) in [(998, true), (999, false), (1000, false)] {
            let mut input = vec![b'a'; len];
            input.extend_from_slice(b"\r\n.\r\n");
            let (status, msg) = run(&input);
            assert!(matches!(status, DataStatus::Done(_)));
            assert_eq!(msg.is_ok(), ok, "line of {len}");
        }
    }

    #[test]
    fn size_limit_keeps_reading_until_the_end() {
        let mut rx = DataReceiver::new(10);
        assert_eq!(rx.feed(b"0123456789\r\n"), DataStatus::NeedMore);
        assert_eq!(rx.feed(b".\r\n"), DataStatus::Done(3));
        assert_eq!(rx.finish(), Err(DataError::TooLarge(10)));
        let mut exact = DataReceiver::new(12);
        exact.feed(b"0123456789\r\n.\r\n");
        assert!(exact.finish().is_ok());
    }

    #[test]
    fn stuffing_round_trip() {
        let original = b"a\r\n.b\r\n..c\r\n.\r\nend\r\n";
        let wire = dot_stuff(original);
        let (status, msg) = run(&wire);
        assert_eq!(status, DataStatus::Done(wire.len()));
        assert_eq!(msg.unwrap(), original);
    }

    proptest! {
        /// Splitting the input at any point gives the same result as one write.
        #[test]
        fn split_anywhere(body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), Just(0u8)], 0..200), split in 0usize..220) {
            let mut wire = body.clone();
            wire.extend_from_slice(b"\r\n.\r\n");
            let split = split.min(wire.len());
            let mut whole = DataReceiver::new(1 << 20);
            let s1 = whole.feed(&wire);
            let mut parts = DataReceiver::new(1 << 20);
            let s2 = match parts.feed(&wire[..split]) {
                DataStatus::Done(n) => DataStatus::Done(n),
                DataStatus::NeedMore => match parts.feed(&wire[split..]) {
                    DataStatus::Done(n) => DataStatus::Done(n + split),
                    other => other,
                },
            };
            prop_assert_eq!(s1, s2);
            prop_assert_eq!(whole.finish(), parts.finish());
        }

        /// Anything stuffed by the client is rebuilt exactly by the server.
        #[test]
        fn stuff_then_receive(lines in proptest::collection::vec("[.a-z ]{0,20}", 0..20)) {
            let original: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let wire = dot_stuff(&original);
            let mut rx = DataReceiver::new(1 << 20);
            prop_assert_eq!(rx.feed(&wire), DataStatus::Done(wire.len()));
            prop_assert_eq!(rx.finish().unwrap(), original);
        }
    }
}
