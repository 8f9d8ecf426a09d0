//! RFC 5321 grammar with no I/O: command and reply parsing and formatting,
//! ESMTP parameters, enhanced status codes, and the DATA state machine
//! (strict end-of-data detection, dot-stuffing, line and size limits).
//!
//! Everything here takes and returns bytes, so the server, the client, unit
//! tests and fuzzers all drive the same code.

mod address;
mod command;
mod data;
mod reply;

pub use address::{Mailbox, ReversePath, parse_forward_path, parse_reverse_path};
pub use command::{Command, CommandError, EsmtpParam, MAX_COMMAND_LINE, parse_command};
pub use data::{DataError, DataReceiver, DataStatus, MAX_LINE, SMUGGLING_TERMINATORS, dot_stuff};
pub use reply::{EnhancedCode, Reply, ReplyError, parse_reply};
