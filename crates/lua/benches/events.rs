//! What a policy's `smtp_server_message_received` handler costs per
//! message: each variant's time per event, and its difference from a
//! policy with no handler measured in the same run (`cargo bench -p
//! petrel-lua`). `PETREL_BENCH_ITERS` sets the calls per variant;
//! `PETREL_BENCH_TASKS=0` leaves out the concurrent run, which makes the
//! bench deterministic enough to count instructions under callgrind.

use petrel_lua::PolicyEngine;
use petrel_message::{EnvelopeAddress, Message};
use petrel_smtp_server::{ConnMeta, SessionPolicy};
use std::sync::Arc;
use std::time::Instant;

// The daemon's allocator (crates/petrel/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A policy needs a spool to load; the bench never writes to it.
fn preamble(dir: &std::path::Path) -> String {
    format!(
        "local kumo = require 'kumo'\nkumo.on('init', function() kumo.define_spool {{ name = 'data', path = '{}' }} end)\n",
        dir.join("spool").display()
    )
}

/// The handler bodies compared; the last is `bench/run.sh`'s `petrel+lua`
/// (bench/realistic-handler.lua).
const VARIANTS: &[(&str, &str)] = &[
    ("no handler", ""),
    ("empty handler", "kumo.on('smtp_server_message_received', function(msg) end)"),
    ("msg:sender().domain", "kumo.on('smtp_server_message_received', function(msg) local d = msg:sender().domain end)"),
    (
        "two set_meta",
        "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('tenant', 'acme') msg:set_meta('egress_pool', 'bench') end)",
    ),
    (
        "prepend_header",
        "kumo.on('smtp_server_message_received', function(msg) msg:prepend_header('X-Bench-Stream', 'transactional') end)",
    ),
    ("bench policy", include_str!("../../../bench/realistic-handler.lua")),
];

fn conn() -> ConnMeta {
    ConnMeta {
        received_from: "127.0.0.1:40000".into(),
        received_via: "127.0.0.1:25".into(),
        hostname: "mx.bench".into(),
        ehlo_domain: Some("client.bench".into()),
        authn_id: None,
        tls: false,
    }
}

/// A 2 KB message as the load benchmark sends it.
fn message() -> Message {
    let mut body = b"From: a@sender.example\r\nTo: b@dest.example\r\nSubject: bench\r\n\r\n".to_vec();
    while body.len() < 2048 {
        body.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    }
    Message::new(
        EnvelopeAddress::parse("a@sender.example").expect("an address"),
        EnvelopeAddress::parse("b@dest.example").expect("an address"),
        Arc::from(body),
    )
}

async fn per_event(engine: &PolicyEngine, iters: u32) -> f64 {
    let (template, conn) = (message(), conn());
    for _ in 0..iters / 10 {
        engine.message_received(&mut template.clone(), &conn).await.expect("the handler runs");
    }
    let start = Instant::now();
    for _ in 0..iters {
        engine.message_received(&mut template.clone(), &conn).await.expect("the handler runs");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
}

/// The process's CPU time so far (user + system, all threads), in µs.
fn process_cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks * 1e6 / 100.0
}

/// Events raised by `tasks` concurrent sessions on a runtime with two
/// workers, as the daemon runs them: CPU µs per event.
fn concurrent(engine: Arc<PolicyEngine>, tasks: u32, iters: u32) -> f64 {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let run = |n: u32| {
        runtime.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let (template, conn) = (message(), conn());
                        for _ in 0..n / tasks {
                            engine.message_received(&mut template.clone(), &conn).await.expect("the handler runs");
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("a task");
            }
        })
    };
    run(iters / 10);
    let before = process_cpu_us();
    run(iters);
    (process_cpu_us() - before) / f64::from(iters)
}

fn main() {
    let iters = std::env::var("PETREL_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let tasks: u32 = std::env::var("PETREL_BENCH_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mut baseline = None;
    let mut concurrent_base = None;
    println!(
        "{:<22} {:>12} {:>14} {:>16} {:>14}",
        "variant",
        "µs/event",
        "vs no handler",
        format!("{tasks} tasks µs CPU"),
        "vs no handler"
    );
    for (i, (name, body)) in VARIANTS.iter().enumerate() {
        if i > 0 && !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let path = dir.path().join(format!("v{i}.lua"));
        std::fs::write(&path, format!("{}{body}\n", preamble(dir.path()))).expect("policy written");
        let engine = Arc::new(PolicyEngine::load(&path, "mx.bench").expect("the policy loads"));
        let us = runtime.block_on(per_event(&engine, iters));
        let base = *baseline.get_or_insert(us);
        let cpu = if tasks == 0 { 0.0 } else { concurrent(engine, tasks, iters * 4) };
        let cpu_base = *concurrent_base.get_or_insert(cpu);
        println!("{name:<22} {us:>12.2} {:>+14.2} {cpu:>16.2} {:>+14.2}", us - base, cpu - cpu_base);
    }
}
