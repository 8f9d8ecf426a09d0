//! Envelope paths (`<user@domain>`) as RFC 5321 §4.1.2 defines them.
//!
//! Parsing is deliberately strict: relay tricks such as `user@a@b` or an
//! unbalanced quote are syntax errors, and a source route (`@a,@b:user@c`) is
//! accepted but dropped, as §3.6.1 asks, so relay decisions only ever look at
//! the final mailbox's domain.

use std::fmt;

/// A mailbox `local@domain`. The local part keeps its quotes if it had any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, unquoted.
    pub local: String,
    /// The domain, or an address literal such as `[192.0.2.1]`.
    pub domain: String,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The `MAIL FROM` path: a mailbox or the null path `<>` used by bounces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`.
    Null,
    /// A mailbox.
    Mailbox(Mailbox),
}

/// Parse `<...>` after `MAIL FROM:`; returns the path and the rest of the line.
pub fn parse_reverse_path(input: &str) -> Result<(ReversePath, &str), &'static str> {
    let (inner, rest) = bracketed(input)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    Ok((ReversePath::Mailbox(parse_mailbox(inner)?), rest))
}

/// Parse `<...>` after `RCPT TO:`; the null path is not allowed here.
pub fn parse_forward_path(input: &str) -> Result<(Mailbox, &str), &'static str> {
    let (inner, rest) = bracketed(input)?;
    if inner.is_empty() {
        return Err("empty recipient address");
    }
    Ok((parse_mailbox(inner)?, rest))
}

/// Split `<inner> rest` honouring quoted strings, so `<"a>b"@c>` works.
/// RFC 5321 §4.5.3.1: the longest path (with its angle brackets) and local part.
pub const MAX_PATH: usize = 256;
pub const MAX_LOCAL_PART: usize = 64;

fn bracketed(input: &str) -> Result<(&str, &str), &'static str> {
    let input = input.trim_start();
    let body = input.strip_prefix('<').ok_or("address must be enclosed in <>")?;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                if i + 2 > MAX_PATH {
                    return Err("path longer than 256 octets");
                }
                return Ok((&body[..i], &body[i + 1..]));
            }
            _ => {}
        }
    }
    Err("address is missing its closing >")
}

fn parse_mailbox(path: &str) -> Result<Mailbox, &'static str> {
    let mailbox = strip_source_route(path)?;
    let (local, domain) = split_local(mailbox)?;
    check_domain(domain)?;
    Ok(Mailbox { local: local.to_string(), domain: domain.to_string() })
}

/// `@a,@b:user@c` → `user@c`; the route's hosts must still be domains.
fn strip_source_route(path: &str) -> Result<&str, &'static str> {
    if !path.starts_with('@') {
        return Ok(path);
    }
    let colon = path.find(':').ok_or("malformed source route")?;
    for hop in path[..colon].split(',') {
        let host = hop.strip_prefix('@').ok_or("malformed source route")?;
        check_domain(host)?;
    }
    Ok(&path[colon + 1..])
}

fn split_local(mailbox: &str) -> Result<(&str, &str), &'static str> {
    if let Some(quoted) = mailbox.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let end = i + 2; // opening quote + closing quote
                    let rest = &mailbox[end..];
                    let domain = rest.strip_prefix('@').ok_or("missing @domain")?;
                    return Ok((&mailbox[..end], domain));
                }
                c if c.is_control() => return Err("control character in address"),
                _ => {}
            }
        }
        return Err("unterminated quoted local part");
    }
    let at = mailbox.find('@').ok_or("missing @domain")?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.len() > MAX_LOCAL_PART {
        return Err("local part longer than 64 octets");
    }
    if local.is_empty() || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("invalid local part");
    }
    if !local.chars().all(is_atext_or_dot) {
        return Err("invalid character in local part");
    }
    Ok((local, domain))
}

fn is_atext_or_dot(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').ok_or("unterminated address literal")?;
        let ok = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok { Ok(()) } else { Err("invalid address literal") };
    }
    if domain.is_empty() || domain.len() > 255 {
        return Err("invalid domain");
    }
    for label in domain.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control()));
        if !valid {
            return Err("invalid domain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<Mailbox, &'static str> {
        parse_forward_path(s).map(|(m, _)| m)
    }

    #[test]
    fn rfc_length_limits() {
        let local = "a".repeat(64);
        let domain = format!("{}.example", "d".repeat(60));
        assert!(fwd(&format!("<{local}@{domain}>")).is_ok());
        assert_eq!(fwd(&format!("<{}@b.example>", "a".repeat(65))), Err("local part longer than 64 octets"));
        let long_domain = ["d".repeat(60), "e".repeat(60), "f".repeat(60), "g".repeat(60)].join(".");
        assert_eq!(fwd(&format!("<{}@{long_domain}.example>", "a".repeat(30))), Err("path longer than 256 octets"));
    }

    #[test]
    fn plain_and_null_paths() {
        assert_eq!(parse_reverse_path("<>").unwrap().0, ReversePath::Null);
        let m = fwd("<a.b+c@Example.COM>").unwrap();
        assert_eq!((m.local.as_str(), m.domain.as_str()), ("a.b+c", "Example.COM"));
        let (_, rest) = parse_reverse_path("<a@b.c> SIZE=10").unwrap();
        assert_eq!(rest, " SIZE=10");
    }

    #[test]
    fn relay_tricks_are_syntax_errors_or_keep_the_final_domain() {
        assert!(fwd("<user@other@example.com>").is_err());
        assert!(fwd("<user>").is_err());
        assert!(fwd("user@example.com").is_err());
        assert!(fwd("<user@example.com").is_err());
        let quoted = fwd("<\"user@other\"@example.com>").unwrap();
        assert_eq!(quoted.domain, "example.com");
        let routed = fwd("<@relay.example,@b.example:user@final.example>").unwrap();
        assert_eq!(routed.domain, "final.example");
        let percent = fwd("<user%other@example.com>").unwrap();
        assert_eq!(percent.domain, "example.com");
    }

    #[test]
    fn domain_literals() {
        assert_eq!(fwd("<u@[127.0.0.1]>").unwrap().domain, "[127.0.0.1]");
        assert!(fwd("<u@[IPv6:::1]>").is_ok());
        assert!(fwd("<u@[999.0.0.1]>").is_err());
        assert!(fwd("<u@-bad.example>").is_err());
        assert!(fwd("<u@a..b>").is_err());
    }
}
