//! `petrel serve`: run the daemon until SIGTERM or Ctrl-C, reloading on
//! SIGHUP, and say what it listens on.

use crate::{Daemon, DaemonOptions};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(policy: PathBuf, lua: petrel_lua::LuaSettings, status_every: std::time::Duration) -> ExitCode {
    let log_filter = petrel_telemetry::init_tracing("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petrel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Handlers go in before any listener binds: a SIGHUP or SIGTERM that
        // arrives as soon as the ports answer must not kill the process.
        use tokio::signal::unix::{SignalKind, signal};
        let (hangup, terminate) = (signal(SignalKind::hangup()).ok(), signal(SignalKind::terminate()).ok());
        let options =
            DaemonOptions { lua, log_filter, status_every: Some(status_every), ..DaemonOptions::new(policy.clone()) };
        let daemon = match Daemon::start(options).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("petrel: {}: {e}", policy.display());
                if let crate::DaemonError::Spool(petrel_spool::SpoolError::Damaged { .. }) = e {
                    eprintln!("petrel: nothing was dropped. `petrel spool check` shows what is readable;");
                    eprintln!("petrel: `petrel spool repair --into DIR` salvages it into a fresh spool.");
                }
                return ExitCode::FAILURE;
            }
        };
        for addr in daemon.smtp_addrs() {
            println!("petrel: ESMTP listening on {addr}");
        }
        for addr in daemon.http_addrs() {
            println!("petrel: HTTP listening on {addr}");
        }
        let hangups = tokio::spawn(reload_on_sighup(daemon.reloader(), hangup));
        let grace = wait_for_stop_signal(terminate).await;
        hangups.abort();
        let _ = hangups.await;
        println!("petrel: shutting down (deliveries in flight get up to {}s)", grace.as_secs());
        daemon.shutdown_within(grace).await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP reloads the policy, as with most daemons.
async fn reload_on_sighup(reloader: std::sync::Arc<crate::Reloader>, hangup: Option<tokio::signal::unix::Signal>) {
    let Some(mut hangup) = hangup else { return };
    while hangup.recv().await.is_some() {
        let outcome = reloader.reload().await;
        match outcome.success {
            true => println!("petrel: SIGHUP: policy reloaded, generation {}", outcome.generation.unwrap_or(0)),
            false => eprintln!("petrel: SIGHUP: reload refused:\n  {}", outcome.errors.join("\n  ")),
        }
    }
}

/// SIGTERM stops gracefully (30 s for deliveries in flight); SIGINT (Ctrl-C)
/// the same, faster (3 s).
async fn wait_for_stop_signal(terminate: Option<tokio::signal::unix::Signal>) -> std::time::Duration {
    let (term, int) = (std::time::Duration::from_secs(30), std::time::Duration::from_secs(3));
    match terminate {
        Some(mut sigterm) => {
            tokio::select! {
                _ = sigterm.recv() => term,
                _ = tokio::signal::ctrl_c() => int,
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
            int
        }
    }
}
