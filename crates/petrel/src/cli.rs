//! The `petrel` command line: `serve` runs the daemon, `validate` checks a
//! policy and shows what it defines.

use crate::{Daemon, DaemonOptions, system_hostname};
use clap::{Parser, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use petrel_lua::{InitConfig, PolicyEngine};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "petrel", version, about = "A mail transfer agent for high-volume senders, scripted in Lua")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the MTA with a policy.
    Serve {
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
    },
    /// Load a policy, run its init event, and show the sources, pools and
    /// listeners it defines; exits non-zero on any error.
    Validate {
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { policy } => serve(policy),
        Command::Validate { policy } => validate(policy),
    }
}

fn serve(policy: PathBuf) -> ExitCode {
    petrel_telemetry::init_tracing("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petrel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let daemon = match Daemon::start(DaemonOptions { policy: policy.clone() }).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("petrel: {}: {e}", policy.display());
                return ExitCode::FAILURE;
            }
        };
        for addr in daemon.smtp_addrs() {
            println!("petrel: ESMTP listening on {addr}");
        }
        wait_for_stop_signal().await;
        println!("petrel: shutting down");
        daemon.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn validate(policy: PathBuf) -> ExitCode {
    match PolicyEngine::load(&policy, &system_hostname()) {
        Ok(engine) => {
            println!("{} is valid.\n", policy.display());
            print!("{}", describe(&engine.current().config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} is invalid:", policy.display());
            for error in &e.errors {
                eprintln!("  {error}");
            }
            ExitCode::FAILURE
        }
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

/// The readable summary `validate` prints.
pub fn describe(config: &InitConfig) -> String {
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    let mut sources = table(&["SOURCE", "ADDRESS", "EHLO DOMAIN", "REMOTE PORT"]);
    for s in config.registry.sources() {
        sources.add_row(vec![
            s.name.clone(),
            s.source_address.map_or_else(|| "(system default)".into(), |a| a.to_string()),
            or_dash(s.ehlo_domain.clone()),
            or_dash(s.remote_port.map(|p| p.to_string())),
        ]);
    }
    let mut pools = table(&["POOL", "SOURCE", "WEIGHT", "SHARE"]);
    for p in config.registry.pools() {
        let total = p.total_weight().max(1) as f64;
        for e in &p.entries {
            let share = format!("{:.1}%", 100.0 * f64::from(e.weight) / total);
            pools.add_row(vec![p.name.clone(), e.source.clone(), e.weight.to_string(), share]);
        }
    }
    let mut listeners = table(&["ESMTP LISTENER", "HOSTNAME", "RELAY HOSTS", "MAX SIZE", "MAX RCPTS"]);
    for l in &config.listeners {
        let relay: Vec<String> = l.relay_hosts.iter().map(|n| n.to_string()).collect();
        listeners.add_row(vec![
            l.listen.to_string(),
            l.hostname.clone(),
            relay.join(", "),
            l.max_message_size.to_string(),
            l.max_recipients_per_message.to_string(),
        ]);
    }
    let logs = config.logs.as_ref().map_or_else(|| "not configured".into(), |l| l.log_dir.display().to_string());
    format!(
        "{sources}\n\n{pools}\n\n{listeners}\n\nSpool: data {} · meta {}\nLogs:  {logs}\n",
        config.spool.data.display(),
        config.spool.meta.display()
    )
}
