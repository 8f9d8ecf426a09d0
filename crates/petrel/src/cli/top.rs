//! `petrel top`: a live view of the running daemon in the terminal, like
//! `kcli top`: rates now and totals, what waits, each source's last hour,
//! the busiest queues. Redraws in place every interval; `--once` prints a
//! single frame (for scripts and pipes).

use super::client::Api;
use super::show::{table, text};
use serde_json::Value;
use std::time::Duration;

const KINDS: [&str; 4] = ["received", "delivered", "deferred", "bounced"];

/// Events per second over the last `window` seconds of a snapshot.
fn rate(snap: &Value, kind: usize, window: i64) -> f64 {
    let now = snap["now"].as_i64().unwrap_or(0);
    let sum: u64 = snap["seconds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["at"].as_i64().is_some_and(|at| at > now - window))
        .map(|b| b["counts"][kind].as_u64().unwrap_or(0))
        .sum();
    sum as f64 / window as f64
}

/// One frame.
pub fn frame(snap: &Value, summary: &Value) -> String {
    let mut rates = table(&["", "PER SECOND (10s)", "PER SECOND (60s)", "SINCE START"]);
    for (i, kind) in KINDS.iter().enumerate() {
        rates.add_row(vec![
            kind.to_string(),
            format!("{:.1}", rate(snap, i, 10)),
            format!("{:.1}", rate(snap, i, 60)),
            text(&snap["totals"][i]),
        ]);
    }
    let mut sources = table(&["SOURCE", "ADDRESS", "CONNECTIONS", "DELIVERED 1H", "DEFERRED 1H", "BOUNCED 1H"]);
    for s in snap["sources"].as_array().into_iter().flatten() {
        sources.add_row(vec![
            text(&s["name"]),
            text(&s["address"]),
            text(&s["connections"]),
            text(&s["delivered"]),
            text(&s["deferred"]),
            text(&s["bounced"]),
        ]);
    }
    let mut queues: Vec<&Value> = summary["scheduled"].as_array().into_iter().flatten().collect();
    queues.sort_by_key(|q| std::cmp::Reverse(q["messages"].as_u64().unwrap_or(0)));
    let mut busiest = table(&["BUSIEST SCHEDULED QUEUES", "MESSAGES", "LAST ERROR"]);
    for q in queues.iter().take(10) {
        busiest.add_row(vec![text(&q["name"]), text(&q["messages"]), text(&q["last_error"])]);
    }
    format!(
        "petrel top — {} — generation {} — {} scheduled, {} ready\n{rates}\n{sources}\n{busiest}\n",
        text(&snap["hostname"]),
        text(&snap["generation"]),
        text(&snap["scheduled_messages"]),
        text(&snap["ready_messages"]),
    )
}

/// Draw frames until interrupted (or once).
pub fn run(endpoint: &str, every: Duration, once: bool) -> anyhow::Result<()> {
    let api = Api::new(endpoint);
    loop {
        let snap = api.get("/api/admin/console/v1")?;
        let summary = api.get("/api/admin/queue-summary/v1")?;
        let frame = frame(&snap, &summary);
        if once {
            print!("{frame}");
            return Ok(());
        }
        // Home the cursor and clear, then draw: the view updates in place.
        println!("\x1b[H\x1b[2J{frame}(every {}s; Ctrl-C to leave)", every.as_secs_f64());
        std::io::Write::flush(&mut std::io::stdout())?;
        std::thread::sleep(every);
    }
}
