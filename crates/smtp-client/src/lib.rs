//! One outbound SMTP session: bind the egress source's address, connect,
//! read the banner, EHLO as the source, then run transactions (pipelined when
//! the server offers PIPELINING) over the same connection until told to quit.
//! Every failure is a typed [`ClientError`] that keeps the server's reply and
//! says whether it is permanent.

mod connect;
mod error;
mod session;
mod stream;
mod tls;
mod transaction;

pub use error::{ClientError, Phase};
pub use session::{Capabilities, ConnectOptions, SmtpClient, Timeouts, Transcript};
pub use tls::{TlsConfigs, TlsMode};
pub use transaction::RecipientResult;
