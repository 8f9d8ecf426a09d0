//! Header access and edits on a raw RFC 5322 message.
//!
//! Petrel keeps the message as the bytes it received; these functions work on
//! the header block in place (unfolding on read, never re-encoding the rest),
//! so a message is relayed byte for byte apart from the edits a policy makes.

/// Why a header edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header name is empty or has characters RFC 5322 forbids.
    #[error("invalid header name {0:?}")]
    InvalidName(String),
    /// The value holds a line break that would start another header.
    #[error("header value for {0:?} contains a bare CR or LF")]
    InvalidValue(String),
}

/// Byte offset where the body starts (just after the blank line), or the
/// whole length when the message has no body.
fn header_block_end(data: &[u8]) -> usize {
    if data.starts_with(b"\r\n") {
        return 2;
    }
    data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(data.len())
}

/// Iterate `(name, raw value with folding, start, end)` over the header block.
fn headers(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], usize, usize)> {
    let end = header_block_end(data);
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < end {
            let start = pos;
            // A header runs until a CRLF not followed by whitespace (folding).
            let mut cursor = pos;
            let stop = loop {
                match data[cursor..end].windows(2).position(|w| w == b"\r\n") {
                    Some(p) => {
                        let next = cursor + p + 2;
                        if next < end && matches!(data[next], b' ' | b'\t') {
                            cursor = next;
                            continue;
                        }
                        break next;
                    }
                    None => break end,
                }
            };
            pos = stop;
            let line = &data[start..stop];
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                return Some((&line[..colon], &line[colon + 1..], start, stop));
            }
        }
        None
    })
}

fn unfold(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.replace("\r\n", "").trim().to_string()
}

/// Counts over a message's header block, for intake limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderCounts {
    /// Header fields (a folded field counts once).
    pub fields: usize,
    /// `Received:` fields: one per hop, so a loop shows as a long list.
    pub received: usize,
    /// Octets of the header block.
    pub octets: usize,
}

/// Count the header fields and `Received:` headers of a message.
pub fn header_counts(data: &[u8]) -> HeaderCounts {
    let mut counts = HeaderCounts { octets: header_block_end(data), ..Default::default() };
    for (name, ..) in headers(data) {
        counts.fields += 1;
        if name.eq_ignore_ascii_case(b"received") {
            counts.received += 1;
        }
    }
    counts
}

/// How many header fields are named `name` (case-insensitive).
pub(crate) fn count_named(data: &[u8], name: &str) -> usize {
    headers(data).filter(|(n, ..)| n.eq_ignore_ascii_case(name.as_bytes())).count()
}

/// The first header named `name` (case-insensitive), unfolded and trimmed.
pub fn first_header(data: &[u8], name: &str) -> Option<String> {
    headers(data).find(|(n, ..)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v, ..)| unfold(v))
}

/// Every header as `(name, unfolded value)`, in order.
pub fn all_headers(data: &[u8]) -> Vec<(String, String)> {
    headers(data).map(|(n, v, ..)| (String::from_utf8_lossy(n).trim().to_string(), unfold(v))).collect()
}

/// A copy of `data` without the headers whose name `remove` selects.
pub fn remove_headers_where(data: &[u8], remove: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for (n, _, start, end) in headers(data) {
        if remove(String::from_utf8_lossy(n).trim()) {
            out.extend_from_slice(&data[last..start]);
            last = end;
        }
    }
    out.extend_from_slice(&data[last..]);
    out
}

/// `name: value\r\n`, checked, with room for `extra` bytes after it.
fn header_line(name: &str, value: &str, extra: usize) -> Result<Vec<u8>, HeaderError> {
    let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name {
        return Err(HeaderError::InvalidName(name.to_string()));
    }
    // Folding CRLFs are allowed only when followed by whitespace.
    let bytes = value.as_bytes();
    let bad = bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) != Some(&b'\n') || !matches!(bytes.get(i + 2), Some(b' ' | b'\t')),
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        _ => false,
    });
    if bad {
        return Err(HeaderError::InvalidValue(name.to_string()));
    }
    let mut line = Vec::with_capacity(name.len() + value.len() + 4 + extra);
    for part in [name.as_bytes(), b": ", bytes, b"\r\n"] {
        line.extend_from_slice(part);
    }
    Ok(line)
}

/// A copy of `data` with `name: value` as its first header.
pub fn prepend_header(data: &[u8], name: &str, value: &str) -> Result<Vec<u8>, HeaderError> {
    let mut out = header_line(name, value, data.len())?;
    out.extend_from_slice(data);
    Ok(out)
}

/// A copy of `data` with `name: value` as its last header.
pub fn append_header(data: &[u8], name: &str, value: &str) -> Result<Vec<u8>, HeaderError> {
    let line = header_line(name, value, 0)?;
    let end = header_block_end(data);
    // Insert before the blank line that ends the headers, if there is one.
    let at = if end >= 2 && data[..end].ends_with(b"\r\n\r\n") || end == 2 && data.starts_with(b"\r\n") {
        end - 2
    } else {
        end
    };
    let mut out = Vec::with_capacity(data.len() + line.len() + 2);
    out.extend_from_slice(&data[..at]);
    if at > 0 && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&line);
    out.extend_from_slice(&data[at..]);
    Ok(out)
}

/// A copy of `data` without any header named `name`.
pub fn remove_headers(data: &[u8], name: &str) -> Vec<u8> {
    remove_headers_where(data, |n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Subject: hello\r\n  world\r\nX-Tag: a\r\nx-tag: b\r\n\r\nbody: not a header\r\n";

    #[test]
    fn reads_unfolded_first_value() {
        assert_eq!(first_header(MSG, "subject").as_deref(), Some("hello  world"));
        assert_eq!(first_header(MSG, "X-TAG").as_deref(), Some("a"));
        assert_eq!(first_header(MSG, "body"), None);
    }

    #[test]
    fn edits() {
        let pre = prepend_header(MSG, "Received", "from x").unwrap();
        assert!(pre.starts_with(b"Received: from x\r\nSubject"));
        let app = append_header(MSG, "X-Last", "1").unwrap();
        assert!(app.windows(17).any(|w| w == b"x-tag: b\r\nX-Last:"));
        assert!(app.ends_with(b"1\r\n\r\nbody: not a header\r\n"));
        let removed = remove_headers(MSG, "x-tag");
        assert_eq!(removed, b"Subject: hello\r\n  world\r\n\r\nbody: not a header\r\n");
        assert!(prepend_header(MSG, "Bad Name", "x").is_err());
        assert!(prepend_header(MSG, "X", "a\r\nInjected: 1").is_err());
        assert!(prepend_header(MSG, "X", "a\r\n folded").is_ok());
    }

    #[test]
    fn counts_fields_and_hops() {
        let msg = b"Received: a\r\nreceived: b\r\n\tfolded\r\nSubject: x\r\n\r\nReceived: in the body\r\n";
        let counts = header_counts(msg);
        assert_eq!((counts.fields, counts.received), (3, 2));
        assert_eq!(counts.octets, msg.len() - b"Received: in the body\r\n".len());
    }

    #[test]
    fn headers_only_message() {
        let app = append_header(b"A: 1\r\n", "B", "2").unwrap();
        assert_eq!(app, b"A: 1\r\nB: 2\r\n");
    }
}
