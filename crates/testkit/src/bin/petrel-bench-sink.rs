//! The receiving end of `bench/run.sh`: an SMTP server that keeps nothing
//! but counts, per client address, the messages it has acknowledged, and
//! exits with a JSON tally once it has acknowledged `--expect` of them.
//!
//! It exists because Postfix's `smtp-sink -M N` exits before it answers the
//! last `250`, and because the benchmark needs the split per source. It is
//! kept lean (no parsing beyond verbs, no storage) so that it costs the
//! machine as little as possible next to the MTA being measured.

use clap::Parser;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser)]
#[command(about = "Count acknowledged messages per client address; exit with a JSON tally after --expect")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Exit once this many messages (recipients) have been acknowledged.
    #[arg(long)]
    expect: usize,
    /// Print a progress line to stderr this often (seconds; 0 for none).
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
}

#[derive(Default)]
struct Tally {
    total: AtomicUsize,
    by_peer: Mutex<BTreeMap<IpAddr, usize>>,
    connections: AtomicUsize,
}

const EHLO_REPLY: &[u8] =
    b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 1073741824\r\n";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let listener = match listen(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("petrel-bench-sink: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let accepting = tally.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            accepting.connections.fetch_add(1, Ordering::Relaxed);
            let tally = accepting.clone();
            tokio::spawn(async move {
                let _ = session(stream, peer.ip(), &tally).await;
            });
        }
    });
    let every = Duration::from_secs_f64(if args.progress > 0.0 { args.progress } else { 3600.0 });
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let total = tally.total.load(Ordering::SeqCst);
        if total >= args.expect {
            break;
        }
        if args.progress > 0.0 && last_print.elapsed() >= every {
            eprint!("\r  sink: {total}/{} acknowledged   ", args.expect);
            last_print = Instant::now();
        }
    }
    if args.progress > 0.0 {
        eprintln!("\r  sink: {}/{} acknowledged   ", tally.total.load(Ordering::SeqCst), args.expect);
    }
    let by_peer: Vec<String> = tally.by_peer.lock().iter().map(|(ip, n)| format!("\"{ip}\": {n}")).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{{\"acknowledged\": {}, \"connections\": {}, \"seconds\": {:.3}, \"by_peer\": {{{}}}}}",
        tally.total.load(Ordering::SeqCst),
        tally.connections.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        by_peer.join(", ")
    );
    let _ = out.flush();
    std::process::ExitCode::SUCCESS
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// One client: verbs answered at once, replies to pipelined commands sent
/// together, DATA read to its final dot.
async fn session(stream: TcpStream, peer: IpAddr, tally: &Tally) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::new(writer);
    writer.write_all(b"220 bench-sink ESMTP\r\n").await?;
    writer.flush().await?;
    let mut line = Vec::with_capacity(1024);
    let mut recipients = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb: [u8; 4] = std::array::from_fn(|i| line.get(i).map_or(b' ', u8::to_ascii_uppercase));
        match &verb {
            b"EHLO" | b"LHLO" => writer.write_all(EHLO_REPLY).await?,
            b"HELO" => writer.write_all(b"250 bench-sink\r\n").await?,
            b"MAIL" => {
                recipients = 0;
                writer.write_all(b"250 2.1.0 ok\r\n").await?;
            }
            b"RCPT" => {
                recipients += 1;
                writer.write_all(b"250 2.1.5 ok\r\n").await?;
            }
            b"DATA" => {
                writer.write_all(b"354 go ahead\r\n").await?;
                writer.flush().await?;
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                writer.write_all(b"250 2.0.0 ok\r\n").await?;
                writer.flush().await?;
                // Counted once the client has been told.
                *tally.by_peer.lock().entry(peer).or_default() += recipients;
                tally.total.fetch_add(recipients, Ordering::SeqCst);
                recipients = 0;
            }
            b"RSET" | b"NOOP" => {
                recipients = 0;
                writer.write_all(b"250 2.0.0 ok\r\n").await?;
            }
            b"QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => writer.write_all(b"500 5.5.1 unknown command\r\n").await?,
        }
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}
