//! `petrel queue list`, `flush`, `delete`, `hold`, `release` and `bounce
//! ID…`: the daemon's waiting messages one by one, as `mailq`,
//! `postqueue -f` and `postsuper` show and change them.

use super::client::{Api, encode};
use super::show::{short_age, table, text};
use super::{Remote, print};
use serde_json::{Value, json};

/// Seconds from an RFC 3339 time to now, as `queue summary` shows ages.
fn since(v: &Value) -> String {
    let Some(t) = v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else { return "-".into() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    match secs {
        s if s < 0 => format!("in {}", short_age(-s as u64)),
        s => short_age(s as u64),
    }
}

/// The waiting messages of the selected queues, one line each.
pub fn list(remote: &Remote, selector: &Value, limit: usize) -> anyhow::Result<()> {
    let mut path = format!("/api/admin/messages/v1?limit={limit}");
    for key in ["queue", "domain", "tenant", "campaign"] {
        if let Some(v) = selector[key].as_str() {
            path.push_str(&format!("&{key}={}", encode(v)));
        }
    }
    let v = Api::new(&remote.endpoint).get(&path)?;
    print(remote, &v, messages);
    Ok(())
}

fn messages(v: &Value) -> String {
    let rows = v["messages"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no messages are waiting\n".into();
    }
    let mut t = table(&["ID", "AGE", "SIZE", "SENDER", "RECIPIENT", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"]);
    for m in &rows {
        let next = match m["held"].as_bool() {
            Some(true) => "held".to_string(),
            _ => match since(&m["next_attempt"]) {
                s if s.starts_with("in ") => s,
                _ => "now".into(),
            },
        };
        t.add_row(vec![
            text(&m["id"]),
            since(&m["created"]),
            text(&m["size"]),
            text(&m["sender"]),
            text(&m["recipient"]),
            text(&m["attempts"]),
            next,
            text(&m["last_error"]),
        ]);
    }
    format!("{t}\n{} message(s)\n", rows.len())
}

/// Make the selected queues' messages due now.
pub fn flush(remote: &Remote, selector: Value) -> anyhow::Result<()> {
    let v = Api::new(&remote.endpoint).post("/api/admin/flush/v1", &selector)?;
    print(remote, &v, |v| format!("flushed: {} message(s) due now\n", v["flushed"].as_u64().unwrap_or(0)));
    Ok(())
}

/// Hold, release, delete or bounce messages by id; one line per id.
pub fn act(remote: &Remote, action: &str, ids: &[String], reason: Option<&str>) -> anyhow::Result<()> {
    let body = json!({ "action": action, "ids": ids, "reason": reason });
    let v = Api::new(&remote.endpoint).post("/api/admin/message-action/v1", &body)?;
    print(remote, &v, |v| {
        let mut out = String::new();
        for r in v["results"].as_array().into_iter().flatten() {
            let outcome = match r["outcome"].as_str().unwrap_or_default() {
                "done" => format!("{action}: done"),
                "not_held" => "not held: nothing to release".into(),
                "not_waiting" => "not waiting (unknown, delivered, or being delivered now)".into(),
                "bad_id" => "not a spool id".into(),
                other => other.to_string(),
            };
            out.push_str(&format!("{}  {outcome}\n", text(&r["id"])));
        }
        out
    });
    Ok(())
}
