//! Turning an inject request into one message per recipient: templates
//! rendered with minijinja, MIME assembled with mail-builder.

use super::{Content, ContentBuilder, InjectRecipient, InjectRequest, Substitutions};
use crate::error::ApiError;
use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use minijinja::Environment;
use petrel_message::{EnvelopeAddress, Message};
use petrel_smtp_proto::parse_forward_path;
use std::sync::Arc;

/// A strictly checked address (the same grammar as SMTP's RCPT TO).
fn address(field: &str, text: &str) -> Result<EnvelopeAddress, ApiError> {
    parse_forward_path(&format!("<{}>", text.trim()))
        .map_err(|e| ApiError::bad_request(field, format!("invalid address {text:?}: {e}")))?;
    EnvelopeAddress::parse(text).map_err(|e| ApiError::bad_request(field, e.to_string()))
}

/// Every template of the request, compiled once (syntax errors name their field).
struct Templates {
    env: Environment<'static>,
}

impl Templates {
    fn compile(content: &Content) -> Result<Self, ApiError> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        let mut add = |name: String, source: &str| {
            env.add_template_owned(name.clone(), source.to_string())
                .map_err(|e| ApiError::bad_request(name, format!("template error: {e}")))
        };
        match content {
            Content::Raw(text) => add("content".into(), text)?,
            Content::Builder(b) => {
                for (field, value) in
                    [("subject", &b.subject), ("text_body", &b.text_body), ("html_body", &b.html_body)]
                {
                    if let Some(v) = value {
                        add(format!("content.{field}"), v)?;
                    }
                }
                for (name, value) in &b.headers {
                    add(format!("content.headers.{name}"), value)?;
                }
            }
        }
        Ok(Self { env })
    }

    fn render(&self, name: &str, ctx: &minijinja::Value, recipient: usize) -> Result<String, ApiError> {
        let template = self.env.get_template(name).expect("compiled above");
        template
            .render(ctx)
            .map_err(|e| ApiError::bad_request(name, format!("template error for recipients[{recipient}]: {e}")))
    }

    fn render_opt(
        &self,
        name: &str,
        present: bool,
        ctx: &minijinja::Value,
        recipient: usize,
    ) -> Result<Option<String>, ApiError> {
        if present { self.render(name, ctx, recipient).map(Some) } else { Ok(None) }
    }
}

fn context(globals: &Substitutions, recipient: &InjectRecipient) -> Substitutions {
    let mut ctx = globals.clone();
    ctx.extend(recipient.substitutions.clone());
    ctx.insert("email".into(), recipient.email.clone().into());
    ctx.insert("name".into(), recipient.name.clone().unwrap_or_default().into());
    ctx
}

/// Render raw content for one recipient and check it. A substituted value
/// may put line breaks in the body, never new header fields.
fn render_raw(templates: &Templates, ctx: &Substitutions, i: usize) -> Result<Vec<u8>, ApiError> {
    let data = crlf(&templates.render("content", &minijinja::Value::from_serialize(ctx), i)?);
    check_raw(&data)?;
    // Only a value with a line break can add a header line; without one
    // (the usual case) the second rendering would be the same text.
    if !ctx.values().any(has_line_break) {
        return Ok(data);
    }
    let flat: Substitutions = ctx.iter().map(|(k, v)| (k.clone(), without_line_breaks(v))).collect();
    let reference = crlf(&templates.render("content", &minijinja::Value::from_serialize(&flat), i)?);
    if header_names(&data) != header_names(&reference) {
        return Err(ApiError::bad_request(
            format!("recipients[{i}].substitutions"),
            "a substituted value adds header lines to the message",
        ));
    }
    Ok(data)
}

/// Lone LF becomes CRLF, as the spool and SMTP require.
fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut previous = 0u8;
    for &b in text.as_bytes() {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// Every line ending (CRLF, lone CR, lone LF) as CRLF: a body for
/// mail-builder, which would pass a lone CR through unencoded.
fn normalize_line_endings(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n")
}

/// A raw message must be sendable as it is: no NUL, no CR outside CRLF,
/// no line over RFC 5322's 998 octets.
fn check_raw(data: &[u8]) -> Result<(), ApiError> {
    if data.contains(&0) {
        return Err(ApiError::bad_request("content", "contains a NUL octet"));
    }
    if data.iter().enumerate().any(|(i, &b)| b == b'\r' && data.get(i + 1) != Some(&b'\n')) {
        return Err(ApiError::bad_request("content", "contains a CR that does not end a line"));
    }
    if data.split(|&b| b == b'\n').any(|line| line.strip_suffix(b"\r").unwrap_or(line).len() > 998) {
        return Err(ApiError::bad_request("content", "has a line longer than 998 octets; use structured content"));
    }
    Ok(())
}

/// The names of the header fields of a raw message.
fn header_names(data: &[u8]) -> Vec<String> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
    data[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.starts_with(b" ") && !line.starts_with(b"\t"))
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|c| line[..c].to_ascii_lowercase()))
        .map(|name| String::from_utf8_lossy(&name).into_owned())
        .collect()
}

fn has_line_break(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains(['\r', '\n']),
        serde_json::Value::Array(a) => a.iter().any(has_line_break),
        serde_json::Value::Object(o) => o.values().any(has_line_break),
        _ => false,
    }
}

/// The same context with every line break in a substituted value turned
/// into a space: what the template renders to without value-made lines.
fn without_line_breaks(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(s.replace(['\r', '\n'], " ")),
        serde_json::Value::Array(a) => a.iter().map(without_line_breaks).collect(),
        serde_json::Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), without_line_breaks(v))).collect(),
        other => other.clone(),
    }
}

/// RFC 5322 §3.6.8 `ftext`: printable ASCII except the colon.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A header value (or display name) may not break lines or carry NUL.
fn single_line(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ApiError::bad_request(field, "may not contain CR, LF or NUL"));
    }
    Ok(())
}

/// Build and validate every message of the request, or fail naming the field.
pub fn build_messages(request: &InjectRequest) -> Result<Vec<Message>, ApiError> {
    let sender = if request.envelope_sender.trim().is_empty() {
        EnvelopeAddress::null()
    } else {
        address("envelope_sender", &request.envelope_sender)?
    };
    if request.recipients.is_empty() {
        return Err(ApiError::bad_request("recipients", "at least one recipient is required"));
    }
    let recipients: Vec<EnvelopeAddress> = request
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| address(&format!("recipients[{i}].email"), &r.email))
        .collect::<Result<_, _>>()?;
    let templates = Templates::compile(&request.content)?;
    let mut messages = Vec::with_capacity(recipients.len());
    for (i, (recipient, rcpt)) in request.recipients.iter().zip(recipients).enumerate() {
        let ctx = context(&request.substitutions, recipient);
        let data = match &request.content {
            Content::Raw(_) => render_raw(&templates, &ctx, i)?,
            Content::Builder(b) => {
                let ctx = minijinja::Value::from_serialize(&ctx);
                build_mime(b, &templates, &ctx, i, recipient, &request.envelope_sender)?
            }
        };
        messages.push(Message::new(sender.clone(), rcpt, Arc::from(data)));
    }
    Ok(messages)
}

/// `"Name" <email>`, or a bare `<email>` when there is no name.
fn named(name: Option<String>, email: String) -> mail_builder::headers::address::Address<'static> {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => mail_builder::headers::address::Address::new_address(Some(name), email),
        None => mail_builder::headers::address::Address::new_address(None::<String>, email),
    }
}

fn build_mime(
    b: &ContentBuilder,
    templates: &Templates,
    ctx: &minijinja::Value,
    i: usize,
    recipient: &InjectRecipient,
    envelope_sender: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut builder = MessageBuilder::new();
    let from_email = b.from.as_ref().map_or(envelope_sender, |f| f.email.as_str()).to_string();
    address("content.from.email", &from_email)?;
    for (field, name) in [
        ("content.from.name", b.from.as_ref().and_then(|f| f.name.as_deref())),
        ("content.reply_to.name", b.reply_to.as_ref().and_then(|r| r.name.as_deref())),
        ("recipients.name", recipient.name.as_deref()),
    ] {
        single_line(field, name.unwrap_or(""))?;
    }
    builder = builder.from(named(b.from.as_ref().and_then(|f| f.name.clone()), from_email));
    let has = |name: &str| b.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
    if !has("To") {
        builder = builder.to(named(recipient.name.clone(), recipient.email.clone()));
    }
    if let Some(reply_to) = &b.reply_to {
        address("content.reply_to.email", &reply_to.email)?;
        builder = builder.reply_to(named(reply_to.name.clone(), reply_to.email.clone()));
    }
    if let Some(subject) = templates.render_opt("content.subject", b.subject.is_some(), ctx, i)? {
        // Checked after rendering: a substitution must not break the line.
        single_line("content.subject", &subject)?;
        builder = builder.subject(subject);
    }
    for name in b.headers.keys() {
        let field = format!("content.headers.{name}");
        if !valid_header_name(name) {
            return Err(ApiError::bad_request(field, "header names are printable ASCII without ':' or spaces"));
        }
        let value = templates.render(&field, ctx, i)?;
        single_line(&field, &value)?;
        // ASCII goes out as written (structured values such as
        // List-Unsubscribe keep their form); anything else RFC 2047-encoded.
        builder = if value.is_ascii() {
            builder.header(name.clone(), Raw::new(value))
        } else {
            builder.header(name.clone(), mail_builder::headers::text::Text::new(value))
        };
    }
    if let Some(text) = templates.render_opt("content.text_body", b.text_body.is_some(), ctx, i)? {
        builder = builder.text_body(normalize_line_endings(&text));
    }
    if let Some(html) = templates.render_opt("content.html_body", b.html_body.is_some(), ctx, i)? {
        builder = builder.html_body(normalize_line_endings(&html));
    }
    if b.text_body.is_none() && b.html_body.is_none() && b.attachments.is_empty() {
        return Err(ApiError::bad_request("content", "needs text_body, html_body or attachments"));
    }
    for (n, a) in b.attachments.iter().enumerate() {
        let data = if a.base64 {
            base64::engine::general_purpose::STANDARD.decode(a.data.trim()).map_err(|e| {
                ApiError::bad_request(format!("content.attachments[{n}].data"), format!("invalid base64: {e}"))
            })?
        } else {
            a.data.clone().into_bytes()
        };
        let name = a.file_name.clone().unwrap_or_else(|| format!("attachment-{}", n + 1));
        builder = builder.attachment(a.content_type.clone(), name, data);
    }
    builder.write_to_vec().map_err(|e| ApiError::bad_request("content", format!("cannot build the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::parse_json;

    fn request(json: &str) -> Result<Vec<Message>, ApiError> {
        build_messages(&parse_json::<InjectRequest>(json.as_bytes())?)
    }

    #[test]
    fn per_recipient_rendering_and_to_headers() {
        let msgs = request(
            r#"{"envelope_sender": "news@s.example", "substitutions": {"greeting": "Hi"},
                "recipients": [{"email": "a@x.example", "name": "Ann", "substitutions": {"code": 1}},
                               {"email": "b@x.example", "substitutions": {"greeting": "Yo", "code": 2}}],
                "content": {"subject": "{{ greeting }}{% if name %} {{ name }}{% endif %}", "from": {"email": "news@s.example", "name": "News"},
                            "text_body": "code {{ code }} for {{ email }}"}}"#,
        )
        .unwrap();
        let text = |m: &Message| String::from_utf8_lossy(m.data.as_ref().unwrap()).to_string();
        assert!(text(&msgs[0]).contains("Subject: Hi Ann"), "{}", text(&msgs[0]));
        assert!(text(&msgs[0]).contains("code 1 for a@x.example"));
        assert!(text(&msgs[0]).contains("To: \"Ann\" <a@x.example>"));
        assert!(text(&msgs[1]).contains("Subject: Yo\r\n"), "{}", text(&msgs[1]));
        assert!(text(&msgs[1]).contains("To: <b@x.example>"), "{}", text(&msgs[1]));
        assert!(text(&msgs[1]).contains("code 2 for b@x.example"));
        assert!(text(&msgs[1]).contains("\r\n"));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |json: &str| request(json).unwrap_err().field.unwrap_or_default();
        assert_eq!(field(r#"{"recipients": [], "content": "x"}"#), "");
        assert_eq!(
            field(r#"{"envelope_sender": "a@b.example", "recipients": [{"email": "nope"}], "content": "x"}"#),
            "recipients[0].email"
        );
        assert_eq!(
            field(r#"{"envelope_sender": "a@@b", "recipients": [{"email": "c@d.example"}], "content": "x"}"#),
            "envelope_sender"
        );
        assert_eq!(
            field(
                r#"{"envelope_sender": "a@b.example", "recipients": [{"email": "c@d.example"}], "content": {"subject": "{{ oops", "text_body": "x"}}"#
            ),
            "content.subject"
        );
        assert_eq!(
            field(r#"{"envelope_sender": "a@b.example", "recipients": [{"email": 5}], "content": "x"}"#),
            "recipients[0].email"
        );
        assert_eq!(field(r#"{"envelope_sender": "a@b.example", "recipients": "x", "content": "x"}"#), "recipients");
        let missing = request(r#"{"recipients": [{"email": "c@d.example"}], "content": "x"}"#).unwrap_err();
        assert!(missing.message.contains("envelope_sender"), "{}", missing.message);
    }

    fn field(json: &str) -> String {
        request(json).unwrap_err().field.unwrap_or_default()
    }

    #[test]
    fn header_injection_is_refused_naming_the_field() {
        let with = |content: &str| {
            format!(
                r#"{{"envelope_sender": "a@b.example", "recipients": [{{"email": "c@d.example", "substitutions": {{"v": "x\r\nBcc: victim@x.test"}}}}], "content": {content}}}"#
            )
        };
        assert_eq!(field(&with(r#"{"subject": "Hi\r\nBcc: victim@x.test", "text_body": "x"}"#)), "content.subject");
        assert_eq!(field(&with(r#"{"subject": "Hi\nBcc: v@x.test", "text_body": "x"}"#)), "content.subject");
        assert_eq!(field(&with(r#"{"subject": "Hi {{ v }}", "text_body": "x"}"#)), "content.subject");
        assert_eq!(field(&with(r#"{"headers": {"X-A\r\nBcc": "1"}, "text_body": "x"}"#)), "content.headers.X-A\r\nBcc");
        assert_eq!(field(&with(r#"{"headers": {"X-Ü": "1"}, "text_body": "x"}"#)), "content.headers.X-Ü");
        assert_eq!(field(&with(r#"{"headers": {"X-A": "{{ v }}"}, "text_body": "x"}"#)), "content.headers.X-A");
        let from = r#"{"from": {"email": "a@b.example", "name": "A\r\nBcc: v@x"}, "text_body": "x"}"#;
        assert_eq!(field(&with(from)), "content.from.name");
        assert_eq!(field(&with(r#""Subject: {{ v }}\r\n\r\nbody""#)), "recipients[0].substitutions");
    }

    #[test]
    fn line_breaks_in_a_substituted_body_value_are_fine() {
        let msgs = request(r#"{"envelope_sender": "a@b.example", "recipients": [{"email": "c@d.example", "substitutions": {"v": "one\ntwo"}}], "content": "Subject: s\n\n{{ v }}\n"}"#).unwrap();
        assert!(msgs[0].data.as_ref().unwrap().ends_with(b"one\r\ntwo\r\n"));
    }

    #[test]
    fn unsendable_raw_content_is_refused_and_structured_bodies_are_encoded() {
        let raw = |c: &str| {
            format!(
                r#"{{"envelope_sender": "a@b.example", "recipients": [{{"email": "c@d.example"}}], "content": {c}}}"#
            )
        };
        for bad in [r#""Subject: s\r\n\r\nline1\rline2""#, r#""Subject: s\r\n\r\nnul\u0000here""#] {
            assert_eq!(field(&raw(bad)), "content", "{bad}");
        }
        let long = format!(r#""Subject: s\n\n{}""#, "a".repeat(2000));
        assert_eq!(field(&raw(&long)), "content");
        let structured = format!(
            r#"{{"subject": "Grüße", "headers": {{"X-Note": "héllo"}}, "text_body": "line1\rline2\n{}"}}"#,
            "b".repeat(2000)
        );
        let msgs = request(&raw(&structured)).unwrap();
        let data = msgs[0].data.as_ref().unwrap();
        assert!(check_raw(data).is_ok(), "{}", String::from_utf8_lossy(data));
        assert!(data.is_ascii(), "non-ASCII headers are encoded");
        let text = String::from_utf8_lossy(data);
        assert!(text.contains("Subject: =?utf-8?") && text.contains("X-Note: =?utf-8?"), "{text}");
        assert!(text.contains("line1\r\nline2"), "{text}");
    }

    #[test]
    fn raw_content_is_a_template_with_crlf() {
        let msgs = request(r#"{"envelope_sender": "", "recipients": [{"email": "c@d.example", "name": "C"}], "content": "Subject: hi {{ name }}\n\nbody\n"}"#).unwrap();
        assert_eq!(&msgs[0].data.as_ref().unwrap()[..], b"Subject: hi C\r\n\r\nbody\r\n");
        assert!(msgs[0].sender.is_null());
    }
}
