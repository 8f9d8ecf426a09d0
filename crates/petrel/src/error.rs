//! Why the daemon cannot start (or a reload cannot bind).

use petrel_dns::DnsError;
use petrel_lua::PolicyLoadError;
use petrel_spool::SpoolError;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The policy does not load.
    #[error("policy error:\n{0}")]
    Policy(#[from] PolicyLoadError),
    /// The resolver cannot be built.
    #[error("cannot set up DNS resolution: {0}")]
    Dns(#[from] DnsError),
    /// The spool cannot be opened.
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
    /// The log directory is unusable.
    #[error("cannot start the log writer in {dir}: {source}")]
    Logs {
        /// The log directory.
        dir: PathBuf,
        /// Why it could not be used.
        source: std::io::Error,
    },
    /// A listener cannot bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address the policy asked for.
        addr: SocketAddr,
        /// Why binding it failed.
        source: std::io::Error,
    },
}
