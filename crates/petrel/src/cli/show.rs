//! Human-readable output of API answers; `--json` prints them raw instead.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "yes".into()
            } else {
                "no".into()
            }
        }
        other => other.to_string(),
    }
}

fn age(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), short_age)
}

/// Seconds as a short age: `45s`, `12m`, `5h`, `3d`.
pub fn short_age(s: u64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Like `mailq` / `kcli queue-summary`: scheduled queues, then ready queues.
pub fn queue_summary(v: &Value) -> String {
    let mut scheduled = table(&["SCHEDULED QUEUE", "MESSAGES", "OLDEST", "STATE", "LAST ERROR"]);
    for q in v["scheduled"].as_array().into_iter().flatten() {
        let state = match (&q["held"], q["suspended"].as_bool(), &q["suspension"]) {
            (Value::String(why), ..) => format!("held: {why}"),
            (_, Some(true), Value::String(why)) => format!("suspended: {why}"),
            (_, Some(true), _) => "suspended".into(),
            _ => "active".into(),
        };
        scheduled.add_row(vec![
            text(&q["name"]),
            text(&q["messages"]),
            age(&q["oldest_age_secs"]),
            state,
            text(&q["last_error"]),
        ]);
    }
    let mut ready = table(&["READY QUEUE (source->site)", "MESSAGES", "CONNECTIONS", "SOURCE"]);
    for q in v["ready"].as_array().into_iter().flatten() {
        let state = match (q["source_suspended"].as_bool(), q["source_unhealthy"].as_bool(), &q["source_suspension"]) {
            (Some(true), _, Value::String(why)) => format!("suspended: {why}"),
            (Some(true), ..) => "suspended".into(),
            (_, Some(true), _) => "unhealthy".into(),
            _ => "active".into(),
        };
        ready.add_row(vec![text(&q["name"]), text(&q["messages"]), text(&q["connections"]), state]);
    }
    let mut out = format!("{scheduled}\n\n{ready}\n");
    let warming = v["warmup"].as_array().into_iter().flatten().collect::<Vec<_>>();
    if !warming.is_empty() {
        let mut t = table(&["WARM-UP SOURCE", "SITE", "DAY", "CAP TODAY", "USED"]);
        for w in warming {
            let cap = match &w["cap"] {
                Value::Null => "no cap (plan done)".to_string(),
                c => text(c),
            };
            let site = if w["site"].is_null() { "all".to_string() } else { text(&w["site"]) };
            t.add_row(vec![text(&w["source"]), site, text(&w["day"]), cap, text(&w["used"])]);
        }
        out.push_str(&format!("\n{t}\n"));
    }
    let bounces = v["bounces_last_hour"].as_array().into_iter().flatten().collect::<Vec<_>>();
    if bounces.is_empty() {
        return out;
    }
    let mut failures = table(&["FAILURES, LAST HOUR: SOURCE", "SITE", "CLASSIFICATION", "DEFERRED", "BOUNCED"]);
    for b in bounces {
        failures.add_row(vec![
            text(&b["source"]),
            text(&b["site"]),
            text(&b["classification"]),
            text(&b["deferred"]),
            text(&b["bounced"]),
        ]);
    }
    format!("{out}\n{failures}\n")
}

/// `petrel suspensions`: every active suspension.
pub fn suspensions(v: &Value) -> String {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no suspensions\n".to_string();
    }
    let mut t = table(&["ID", "KIND", "TARGET", "REASON", "BY", "CREATED", "LEFT"]);
    for s in &list {
        let created = s["created"].as_str().map(|c| c.chars().take(19).collect::<String>()).unwrap_or_default();
        t.add_row(vec![
            text(&s["id"]),
            text(&s["kind"]),
            text(&s["target"]),
            text(&s["reason"]),
            text(&s["creator"]),
            created.replace('T', " "),
            text(&s["duration"]),
        ]);
    }
    format!("{t}\n")
}

pub fn route(v: &Value) -> String {
    let mut t = table(&["STEP", "DECISION", "WHY"]);
    t.add_row(vec![
        "queue".into(),
        text(&v["queue"]),
        "campaign:tenant@domain!routing_domain (meta queue overrides)".into(),
    ]);
    t.add_row(vec!["egress pool".into(), text(&v["egress_pool"]), text(&v["pool_reason"])]);
    let address = v["source_address"].as_str().unwrap_or("system default");
    let skipped: Vec<String> = v["skipped_sources"].as_array().into_iter().flatten().map(text).collect();
    let why = match skipped.is_empty() {
        true => "next weighted round-robin pick for the queue".to_string(),
        false => format!("next weighted round-robin pick; skipped {}", skipped.join("; ")),
    };
    t.add_row(vec!["egress source".into(), format!("{} ({address})", text(&v["egress_source"])), why]);
    t.add_row(vec![
        "EHLO as".into(),
        text(&v["ehlo_domain"]),
        "egress path ehlo_domain, else the source's, else the host name".into(),
    ]);
    let hosts: Vec<String> = v["hosts"].as_array().into_iter().flatten().map(text).collect();
    let hosts = match v["dns_error"].as_str() {
        Some(e) => format!("none: {e}"),
        None => hosts.join(", "),
    };
    t.add_row(vec!["destination".into(), hosts, text(&v["hosts_reason"])]);
    t.add_row(vec!["site".into(), text(&v["site"]), "ready queue key: sorted destination host set".into()]);
    let mut path = table(&["EGRESS PATH SETTING", "VALUE"]);
    for (k, value) in v["egress_path"].as_object().into_iter().flatten() {
        path.add_row(vec![k.clone(), text(value)]);
    }
    format!("{t}\n\n{path}\n")
}

/// `petrel reload`: the new generation and what changed, one line each.
pub fn reload(v: &Value) -> String {
    let mut out = format!("reloaded: generation {}\n", v["generation"]);
    let names = |x: &Value| -> Vec<String> { x.as_array().into_iter().flatten().map(text).collect() };
    for kind in ["sources", "pools"] {
        let c = &v["changes"][kind];
        let changed: Vec<String> = c["changed"].as_array().into_iter().flatten().map(|d| text(&d["name"])).collect();
        for (what, list) in [("added", names(&c["added"])), ("removed", names(&c["removed"])), ("changed", changed)] {
            if !list.is_empty() {
                out.push_str(&format!("  {kind} {what}: {}\n", list.join(", ")));
            }
        }
    }
    for what in ["started", "stopped", "updated"] {
        let list = names(&v["changes"]["listeners"][what]);
        if !list.is_empty() {
            out.push_str(&format!("  listeners {what}: {}\n", list.join(", ")));
        }
    }
    out
}

pub fn message(v: &Value) -> String {
    let mut t = table(&["FIELD", "VALUE"]);
    for key in ["id", "sender", "recipient", "queue", "created", "num_attempts", "due", "size"] {
        t.add_row(vec![key.to_string(), text(&v[key])]);
    }
    for (k, value) in v["meta"].as_object().into_iter().flatten() {
        t.add_row(vec![format!("meta.{k}"), text(value)]);
    }
    let body = v["body"].as_str().map(|b| format!("\n{b}")).unwrap_or_default();
    format!("{t}\n{body}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_summary_lists_the_last_hours_failures_by_source_and_site() {
        let v = serde_json::json!({
            "scheduled": [], "ready": [],
            "bounces_last_hour": [
                { "source": "ip-2", "site": "mx.big.test", "classification": "SpamBlock", "deferred": 0, "bounced": 41 },
                { "source": "ip-3", "site": "mx.big.test", "classification": "InvalidRecipient", "deferred": 0, "bounced": 2 },
            ],
        });
        let out = super::queue_summary(&v);
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("mx.big.test")).collect();
        assert!(lines[0].contains("ip-2") && lines[0].contains("SpamBlock") && lines[0].contains("41"), "{out}");
        assert!(lines[1].contains("ip-3") && lines[1].contains("InvalidRecipient"), "{out}");
        let quiet = super::queue_summary(&serde_json::json!({ "scheduled": [], "ready": [] }));
        assert!(!quiet.contains("FAILURES"), "no failures, no table: {quiet}");
        let held = super::queue_summary(&serde_json::json!({
            "scheduled": [{ "name": "held.test", "messages": 3, "suspended": true,
                            "suspension": "blocked (by admin, 59m left)" }],
            "ready": [],
        }));
        assert!(held.contains("suspended: blocked (by admin, 59m left)"), "{held}");
        assert!(!quiet.contains("FAILURES"), "no failures, no table: {quiet}");
    }

    #[test]
    fn suspensions_are_a_table_with_reason_creator_and_time_left() {
        let v = serde_json::json!([{ "id": "9511a32e", "kind": "queue", "target": "domain=held.test",
            "reason": "blocked at the provider", "creator": "admin", "created": "2026-12-01T10:00:00.123Z",
            "expires": "2026-12-01T11:00:00Z", "duration": "59m 12s" }]);
        let out = super::suspensions(&v);
        for needle in
            ["9511a32e", "domain=held.test", "blocked at the provider", "admin", "2026-12-01 10:00:00", "59m 12s"]
        {
            assert!(out.contains(needle), "{needle} missing: {out}");
        }
        assert_eq!(super::suspensions(&serde_json::json!([])), "no suspensions\n");
    }
}
