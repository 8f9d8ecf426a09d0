//! RFC 5322 conformance checks a policy can reject on, and the fixes that
//! only add what is missing (`msg:check_fix_conformance`).
//!
//! Fixes that would rebuild the message (re-wrapping long lines, re-encoding
//! 8-bit parts, renaming malformed headers) are not offered: they rewrite
//! the content and break signatures, and Petrel relays bytes as received.

use std::fmt;

/// One kind of conformance problem, named as KumoMTA names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Issue {
    /// A header line with a name and no colon.
    MissingColonValue,
    /// A bare CR or LF instead of CRLF.
    NonCanonicalLineEndings,
    /// `Subject :` rather than `Subject:`.
    NameEndsWithSpace,
    /// A line longer than 998 octets (RFC 5322 §2.1.1).
    LineTooLong,
    /// 8-bit content without a transfer encoding that allows it.
    NeedsTransferEncoding,
    /// No `Date:`.
    MissingDateHeader,
    /// No `Message-ID:`.
    MissingMessageIdHeader,
    /// No `MIME-Version: 1.0`.
    MissingMimeVersion,
}

const ALL: [(Issue, &str); 8] = [
    (Issue::MissingColonValue, "MISSING_COLON_VALUE"),
    (Issue::NonCanonicalLineEndings, "NON_CANONICAL_LINE_ENDINGS"),
    (Issue::NameEndsWithSpace, "NAME_ENDS_WITH_SPACE"),
    (Issue::LineTooLong, "LINE_TOO_LONG"),
    (Issue::NeedsTransferEncoding, "NEEDS_TRANSFER_ENCODING"),
    (Issue::MissingDateHeader, "MISSING_DATE_HEADER"),
    (Issue::MissingMessageIdHeader, "MISSING_MESSAGE_ID_HEADER"),
    (Issue::MissingMimeVersion, "MISSING_MIME_VERSION"),
];

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ALL.iter().find(|(i, _)| i == self).map(|(_, n)| *n).expect("every issue is named");
        f.write_str(name)
    }
}

impl Issue {
    /// A `|`-separated list such as `"LINE_TOO_LONG|MISSING_DATE_HEADER"`;
    /// an unknown name is an error naming it.
    pub fn parse_set(text: &str) -> Result<Vec<Issue>, String> {
        text.split('|')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| ALL.iter().find(|(_, n)| *n == t).map(|(i, _)| *i).ok_or_else(|| format!("unknown issue {t:?}")))
            .collect()
    }

    /// Whether the fix only adds a header (the rest of the message stays
    /// byte for byte).
    pub fn is_fixable(self) -> bool {
        matches!(
            self,
            Issue::NonCanonicalLineEndings
                | Issue::MissingDateHeader
                | Issue::MissingMessageIdHeader
                | Issue::MissingMimeVersion
        )
    }
}

fn header_block(data: &[u8]) -> &[u8] {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").map_or(data.len(), |p| p + 2);
    &data[..end]
}

/// The problems `data` has, in [`Issue`] order.
pub fn conformance_issues(data: &[u8]) -> Vec<Issue> {
    let mut found = Vec::new();
    let headers = header_block(data);
    let mut lines = headers.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (mut no_colon, mut space_name) = (false, false);
    for line in lines.by_ref() {
        if line.is_empty() || matches!(line[0], b' ' | b'\t') {
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            None => no_colon = true,
            Some(colon) if line[..colon].ends_with(b" ") || line[..colon].ends_with(b"\t") => space_name = true,
            Some(_) => {}
        }
    }
    let bare = data.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || data[i - 1] != b'\r',
        b'\r' => data.get(i + 1) != Some(&b'\n'),
        _ => false,
    });
    let too_long = data.split(|&b| b == b'\n').any(|line| line.len() > 1000);
    let has = |name: &str| crate::first_header(data, name);
    let mime_ok = has("MIME-Version").is_some_and(|v| v.trim() == "1.0");
    let eight_bit_ok = has("Content-Transfer-Encoding")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("8bit") || v.trim().eq_ignore_ascii_case("binary"));
    let checks = [
        (no_colon, Issue::MissingColonValue),
        (bare, Issue::NonCanonicalLineEndings),
        (space_name, Issue::NameEndsWithSpace),
        (too_long, Issue::LineTooLong),
        (crate::has_8bit(data) && !eight_bit_ok, Issue::NeedsTransferEncoding),
        (has("Date").is_none(), Issue::MissingDateHeader),
        (has("Message-ID").is_none(), Issue::MissingMessageIdHeader),
        (!mime_ok, Issue::MissingMimeVersion),
    ];
    found.extend(checks.iter().filter(|(hit, _)| *hit).map(|(_, issue)| *issue));
    found
}

/// `data` with bare CR and LF turned into CRLF.
fn canonical_line_endings(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Apply the fixes for `issues` (each [`Issue::is_fixable`]) to `data`.
/// `host` names the Message-ID's right-hand side.
pub fn fix_conformance(data: &[u8], issues: &[Issue], host: &str) -> Result<Vec<u8>, crate::HeaderError> {
    let mut out =
        if issues.contains(&Issue::NonCanonicalLineEndings) { canonical_line_endings(data) } else { data.to_vec() };
    if issues.contains(&Issue::MissingMimeVersion) {
        out = crate::remove_headers(&out, "MIME-Version");
        out = crate::append_header(&out, "MIME-Version", "1.0")?;
    }
    if issues.contains(&Issue::MissingDateHeader) {
        out = crate::append_header(&out, "Date", &chrono::Utc::now().to_rfc2822())?;
    }
    if issues.contains(&Issue::MissingMessageIdHeader) {
        let id = format!("<{}@{host}>", uuid::Uuid::now_v7().simple());
        out = crate::append_header(&out, "Message-ID", &id)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_fixes_what_it_can() {
        let data = b"Subject : hi\r\nFrom: a@b.example\nBadline\r\n\r\nbody\r\n";
        let issues = conformance_issues(data);
        assert!(issues.contains(&Issue::NameEndsWithSpace));
        assert!(issues.contains(&Issue::MissingColonValue));
        assert!(issues.contains(&Issue::NonCanonicalLineEndings));
        assert!(issues.contains(&Issue::MissingDateHeader));
        assert!(!issues.contains(&Issue::LineTooLong));
        let fixable: Vec<Issue> = issues.iter().copied().filter(|i| i.is_fixable()).collect();
        let fixed = fix_conformance(data, &fixable, "mta.example").unwrap();
        let after = conformance_issues(&fixed);
        for issue in fixable {
            assert!(!after.contains(&issue), "{issue} still there");
        }
        assert!(fixed.ends_with(b"\r\n\r\nbody\r\n"), "{}", String::from_utf8_lossy(&fixed));
        assert_eq!(Issue::parse_set("LINE_TOO_LONG|MISSING_DATE_HEADER").unwrap().len(), 2);
        assert!(Issue::parse_set("NOPE").is_err());
        assert_eq!(Issue::parse_set("").unwrap(), vec![]);
    }
}
