//! SMTP command lines: one line in (without its CRLF), one [`Command`] out.

use crate::address::{Mailbox, ReversePath, parse_forward_path, parse_reverse_path};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

/// An ESMTP parameter such as `SIZE=1000` or `SMTPUTF8`. Keywords are
/// upper-cased so callers compare them directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsmtpParam {
    /// The parameter name, upper-cased.
    pub keyword: String,
    /// Its value after `=`, if any.
    pub value: Option<String>,
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// LMTP's greeting (RFC 2033).
    Lhlo(String),
    /// `MAIL FROM:<path> params`.
    MailFrom {
        /// The reverse path.
        path: ReversePath,
        /// ESMTP parameters (`SIZE=`, `BODY=`, `SMTPUTF8`, …).
        params: Vec<EsmtpParam>,
    },
    /// `RCPT TO:<path> params`.
    RcptTo {
        /// The recipient.
        path: Mailbox,
        /// ESMTP parameters.
        params: Vec<EsmtpParam>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
    /// `VRFY`, answered without disclosing anything.
    Vrfy(String),
    /// `HELP`.
    Help,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The initial response, base64 as sent.
        initial: Option<String>,
    },
}

/// Why a line is not a command; each maps to the reply RFC 5321 asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A verb this server does not know (`500`).
    #[error("command not recognized")]
    Unrecognized,
    /// A known verb with bad arguments (`501`), saying what is wrong.
    #[error("syntax error in parameters: {0}")]
    Syntax(&'static str),
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8 or contains NUL")]
    BadEncoding,
}

impl CommandError {
    /// The reply code: 500 for an unknown verb, 501 for bad arguments.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            CommandError::Unrecognized => (500, "5.5.1"),
            CommandError::Syntax(_) | CommandError::BadEncoding => (501, "5.5.4"),
        }
    }
}

/// Parse one command line; `line` excludes the terminating CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.contains(&0) {
        return Err(CommandError::BadEncoding);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadEncoding)?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Ok(Command::Ehlo(hello_domain(rest)?)),
        "HELO" => Ok(Command::Helo(hello_domain(rest)?)),
        "LHLO" => Ok(Command::Lhlo(hello_domain(rest)?)),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(rest, Command::Data),
        "RSET" => no_args(rest, Command::Rset),
        "QUIT" => no_args(rest, Command::Quit),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy(rest.trim().to_string())),
        "AUTH" => parse_auth(rest),
        _ => Err(CommandError::Unrecognized),
    }
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, CommandError> {
    if rest.trim().is_empty() { Ok(cmd) } else { Err(CommandError::Syntax("this command takes no arguments")) }
}

fn hello_domain(rest: &str) -> Result<String, CommandError> {
    let domain = rest.trim();
    if domain.is_empty() || domain.contains(char::is_whitespace) {
        return Err(CommandError::Syntax("a single domain or address literal is required"));
    }
    Ok(domain.to_string())
}

fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| &rest[keyword.len()..])
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let after = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax("expected MAIL FROM:<address>"))?;
    let (path, rest) = parse_reverse_path(after).map_err(CommandError::Syntax)?;
    Ok(Command::MailFrom { path, params: parse_params(rest)? })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let after = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax("expected RCPT TO:<address>"))?;
    let (path, rest) = parse_forward_path(after).map_err(CommandError::Syntax)?;
    Ok(Command::RcptTo { path, params: parse_params(rest)? })
}

fn parse_params(rest: &str) -> Result<Vec<EsmtpParam>, CommandError> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax("parameters must follow the address after a space"));
    }
    rest.split_ascii_whitespace()
        .map(|word| {
            let (keyword, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (word, None),
            };
            let valid = !keyword.is_empty() && keyword.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(CommandError::Syntax("malformed ESMTP parameter"));
            }
            Ok(EsmtpParam { keyword: keyword.to_ascii_uppercase(), value })
        })
        .collect()
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split_ascii_whitespace();
    let mechanism = words.next().ok_or(CommandError::Syntax("AUTH needs a mechanism"))?;
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many AUTH arguments"));
    }
    Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse_command(b"ehlo client.example").unwrap(), Command::Ehlo("client.example".into()));
        assert_eq!(parse_command(b"QuIt").unwrap(), Command::Quit);
        assert_eq!(parse_command(b"NOOP anything").unwrap(), Command::Noop);
    }

    #[test]
    fn mail_with_params() {
        let cmd = parse_command(b"MAIL FROM:<a@b.example> size=100 BODY=8BITMIME SMTPUTF8").unwrap();
        let Command::MailFrom { path, params } = cmd else { panic!("not MAIL") };
        assert!(matches!(path, ReversePath::Mailbox(_)));
        let keys: Vec<_> = params.iter().map(|p| p.keyword.as_str()).collect();
        assert_eq!(keys, ["SIZE", "BODY", "SMTPUTF8"]);
        assert_eq!(params[0].value.as_deref(), Some("100"));
    }

    #[test]
    fn errors_map_to_rfc_codes() {
        assert_eq!(parse_command(b"FOO").unwrap_err().code().0, 500);
        assert_eq!(parse_command(b"MAIL <a@b>").unwrap_err().code().0, 501);
        assert_eq!(parse_command(b"RCPT TO:<>").unwrap_err().code().0, 501);
        assert_eq!(parse_command(b"EHLO").unwrap_err().code().0, 501);
        assert_eq!(parse_command(b"DATA x").unwrap_err().code().0, 501);
        assert_eq!(parse_command(b"NOOP \0").unwrap_err(), CommandError::BadEncoding);
        assert_eq!(parse_command(b"HELO \xff").unwrap_err(), CommandError::BadEncoding);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes at all: a command or an error, never a panic.
        #[test]
        fn never_panics_on_arbitrary_bytes(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_command(&line);
        }

        /// Well-formed envelopes parse back to the addresses they carry.
        #[test]
        fn mail_and_rcpt_round_trip(local in "[a-z0-9][a-z0-9.+_-]{0,20}[a-z0-9]", domain in "[a-z]([a-z0-9-]{0,14}[a-z0-9])?\\.[a-z]{2,6}") {
            let address = format!("{local}@{domain}");
            if local.contains("..") {
                return Ok(());
            }
            match parse_command(format!("RCPT TO:<{address}>").as_bytes()) {
                Ok(Command::RcptTo { path, .. }) => prop_assert_eq!(path.to_string(), address),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
