//! `petrel trace-smtp-server` and `trace-smtp-client`: live transcripts of
//! the sessions the daemon accepts or opens, one protocol line per output
//! line, until interrupted (like `kcli trace-smtp-server`).

use super::client::{Api, encode};
use serde_json::Value;
use std::io::Write;

/// Which side, and the filters the API takes.
pub struct Trace<'a> {
    pub endpoint: &'a str,
    pub outbound: bool,
    pub peer: Option<&'a str>,
    pub site: Option<&'a str>,
    pub json: bool,
}

/// One event as a person reads it: time, session, peer, arrow, line.
pub fn format(event: &Value) -> String {
    let at = event["at"].as_str().unwrap_or("");
    let time = at.split('T').nth(1).unwrap_or(at).trim_end_matches('Z');
    let session = event["session"].as_u64().unwrap_or(0);
    let peer = event["peer"].as_str().unwrap_or("-");
    let line = event["line"].as_str().unwrap_or("");
    match event["direction"].as_str().unwrap_or("") {
        "open" => {
            let site = event["site"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
            format!("{time} [{session}] === {peer}{site} connected (local {})", event["local"].as_str().unwrap_or("-"))
        }
        "close" => format!("{time} [{session}] === {peer} closed"),
        "recv" => format!("{time} [{session}] {peer} <- {line}"),
        "send" => format!("{time} [{session}] {peer} -> {line}"),
        other => format!("{time} {other}: {line}"),
    }
}

/// Print events until the daemon goes away or the reader leaves.
pub fn run(t: Trace<'_>) -> anyhow::Result<()> {
    let side = if t.outbound { "client" } else { "server" };
    let mut query = Vec::new();
    if let Some(peer) = t.peer {
        query.push(format!("peer={}", encode(peer)));
    }
    if let Some(site) = t.site {
        query.push(format!("site={}", encode(site)));
    }
    let path = format!("/api/admin/trace-smtp-{side}/v1?{}", query.join("&"));
    let reader = Api::new(t.endpoint).stream(&path)?;
    eprintln!("tracing {} sessions; Ctrl-C to stop", if t.outbound { "outbound" } else { "inbound" });
    let mut out = std::io::stdout().lock();
    for line in std::io::BufRead::lines(reader) {
        let line = line?;
        let text = if t.json { line } else { serde_json::from_str::<Value>(&line).map(|v| format(&v)).unwrap_or(line) };
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(())
}
