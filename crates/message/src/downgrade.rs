//! Sending 8-bit content to a peer that offers no 8BITMIME (RFC 6152 §3):
//! each MIME leaf part whose body has 8-bit octets and no transfer
//! encoding is re-encoded as quoted-printable and its
//! Content-Transfer-Encoding header rewritten; everything else stays byte
//! for byte. Headers with 8-bit octets cannot be downgraded this way: they
//! need SMTPUTF8 (RFC 6532), which the caller checks first.

use mail_parser::{Encoding, HeaderName, MessageParser, PartType};

/// Why a message cannot be sent to a server without 8BITMIME.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DowngradeError {
    /// A header has 8-bit bytes, which transfer encodings cannot carry.
    #[error("the message headers contain 8-bit octets; the peer must offer SMTPUTF8")]
    EightBitHeaders,
    /// The MIME structure cannot be parsed to re-encode its parts.
    #[error("the message cannot be parsed as MIME for conversion to 7 bits")]
    Unparsable,
}

/// Whether any octet has the high bit set.
pub fn has_8bit(data: &[u8]) -> bool {
    data.iter().any(|&b| b >= 0x80)
}

/// Whether the header block (up to the first empty line) has 8-bit octets.
pub fn has_8bit_headers(data: &[u8]) -> bool {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
    has_8bit(&data[..end])
}

/// The message with every 8-bit body re-encoded for a 7-bit transport.
pub fn to_7bit(data: &[u8]) -> Result<Vec<u8>, DowngradeError> {
    if !has_8bit(data) {
        return Ok(data.to_vec());
    }
    if has_8bit_headers(data) {
        return Err(DowngradeError::EightBitHeaders);
    }
    let parsed = MessageParser::default().parse(data).ok_or(DowngradeError::Unparsable)?;
    // (start, end, replacement), applied from the end so offsets hold.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for part in &parsed.parts {
        let (body_start, body_end) = (part.offset_body as usize, part.offset_end as usize);
        let body = &data[body_start..body_end.min(data.len())];
        if !has_8bit(body) {
            continue;
        }
        let header = &data[part.offset_header as usize..body_start];
        if has_8bit(header) {
            return Err(DowngradeError::EightBitHeaders);
        }
        match &part.body {
            PartType::Multipart(_) => continue,
            // An attached message is converted in place, as a message.
            PartType::Message(_) => edits.push((body_start, body_end, to_7bit(body)?)),
            _ if part.encoding != Encoding::None => continue,
            _ => {
                let cte = part.headers.iter().find(|h| matches!(h.name, HeaderName::ContentTransferEncoding));
                let line = b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec();
                match cte {
                    Some(h) => edits.push((h.offset_field as usize, line_end(data, h.offset_end as usize), line)),
                    None => {
                        let at = header_insert_point(data, part.offset_header as usize, body_start);
                        edits.push((at, at, line));
                    }
                }
                edits.push((body_start, body_end, encode_body(body)));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = data.to_vec();
    for (start, end, replacement) in edits {
        out.splice(start..end, replacement);
    }
    Ok(out)
}

/// Quoted-printable with the body's own line breaks kept as CRLF.
fn encode_body(body: &[u8]) -> Vec<u8> {
    let ends_with_newline = body.ends_with(b"\r\n");
    let mut encoded = quoted_printable::encode(body);
    if ends_with_newline && !encoded.ends_with(b"\r\n") {
        encoded.extend_from_slice(b"\r\n");
    }
    encoded
}

/// The end of the line `offset` falls in (after its CRLF), so a replaced
/// header takes its folded continuation lines with it.
fn line_end(data: &[u8], offset: usize) -> usize {
    let mut end = offset.min(data.len());
    while end < data.len() && data[end - 1] != b'\n' {
        end += 1;
    }
    end
}

/// Where a new header goes: just before the empty line ending the header
/// block that runs from `start` to `body_start`.
fn header_insert_point(data: &[u8], start: usize, body_start: usize) -> usize {
    let block = &data[start..body_start];
    if block.ends_with(b"\r\n\r\n") {
        body_start - 2
    } else if block == b"\r\n" {
        start
    } else {
        body_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_ok(data: &[u8]) -> bool {
        !has_8bit(data) && data.split(|&b| b == b'\n').all(|l| l.len() <= 1000)
    }

    #[test]
    fn a_single_part_body_becomes_quoted_printable() {
        let msg = "Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, Jörg\r\nline two\r\n";
        let out = to_7bit(msg.as_bytes()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(lines_ok(&out), "{text}");
        assert!(
            text.contains(
                "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, J=C3=B6rg\r\nline two\r\n"
            ),
            "{text}"
        );
        assert!(!text.contains("8bit"));
        let back = MessageParser::default().parse(&out).unwrap();
        assert_eq!(back.body_text(0).unwrap().trim_end(), "Grüße, Jörg\r\nline two");
    }

    #[test]
    fn only_8bit_parts_of_a_multipart_change() {
        let msg = "Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nnaïve café\r\n--b--\r\n";
        let out = to_7bit(msg.as_bytes()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(lines_ok(&out), "{text}");
        assert!(text.contains("--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b\r\n"), "{text}");
        assert!(
            text.contains("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve caf=C3=A9"),
            "{text}"
        );
        let back = MessageParser::default().parse(&out).unwrap();
        assert_eq!(back.body_text(1).unwrap().trim_end(), "naïve café");
    }

    #[test]
    fn ascii_is_untouched_and_8bit_headers_are_refused() {
        let ascii = b"Subject: a\r\n\r\nb\r\n";
        assert_eq!(to_7bit(ascii).unwrap(), ascii);
        assert_eq!(to_7bit("Subject: Grüße\r\n\r\nb\r\n".as_bytes()), Err(DowngradeError::EightBitHeaders));
    }
}
