//! Why the daemon cannot start (or a reload cannot bind).

use petrel_dns::DnsError;
use petrel_lua::PolicyLoadError;
use petrel_spool::SpoolError;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("policy error:\n{0}")]
    Policy(#[from] PolicyLoadError),
    #[error("cannot set up DNS resolution: {0}")]
    Dns(#[from] DnsError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot start the log writer in {dir}: {source}")]
    Logs { dir: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}
