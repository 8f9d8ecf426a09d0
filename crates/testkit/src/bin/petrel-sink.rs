//! A local SMTP sink for trying Petrel out: prints one line per message with
//! the address it came from and the EHLO name it used, and a per-source
//! tally on exit. It never relays anything.

use clap::Parser;
use petrel_testkit::Sink;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "Accept SMTP on loopback and show which source each message came from")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: std::net::SocketAddr,
    /// Reply code at end of DATA (250 accepts; 451 defers; 550 bounces).
    #[arg(long, default_value_t = 250)]
    reply: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let code = args.reply;
    let sink = match Sink::try_start_at(args.listen, Arc::new(move |_, _| (code, format!("sink replies {code}")))).await
    {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("petrel-sink: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("petrel-sink listening on {} (replying {code}); Ctrl-C to stop", sink.addr());
    let mut shown = 0;
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let received = sink.received();
                for m in &received[shown..] {
                    println!("from {:<15} ehlo {:<24} {} -> {}", m.peer.ip(), m.ehlo, m.sender, m.recipients.join(","));
                }
                shown = received.len();
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for m in sink.received() {
        *tally.entry(format!("{} ({})", m.peer.ip(), m.ehlo)).or_default() += 1;
    }
    println!("\nmessages per source:");
    for (source, n) in tally {
        println!("  {source:<40} {n}");
    }
    std::process::ExitCode::SUCCESS
}
