//! The message as the rest of Petrel sees it: a spool id, one sender, one
//! recipient (Petrel spools one message per recipient), a meta map set by
//! policy, and the RFC 5322 body with header access and edits.

mod address;
mod address_header;
mod conformance;
mod dkim;
mod downgrade;
mod dsn;
mod headers;
mod id;
mod message;
mod meta;
mod reports;

pub use address::{AddressError, EnvelopeAddress};
pub use address_header::{HeaderMailbox, address_header};
pub use conformance::{Issue, conformance_issues, fix_conformance};
pub use dkim::{Canon, DkimAlgorithm, DkimError, DkimSigningKey, DkimSpec};
pub use downgrade::{DowngradeError, has_8bit, has_8bit_headers, to_7bit};
pub use dsn::{DSN_OF_META, DsnAction, DsnReport, build_dsn, wants_dsn};
pub use headers::{
    HeaderCounts, HeaderError, all_headers, append_header, first_header, header_counts, prepend_header, remove_headers,
    remove_headers_where,
};
pub use id::{SpoolId, SpoolIdError};
pub use message::{Message, QueueNameParts, queue_name};
pub use meta::Meta;
pub use reports::{DsnRecipient, DsnReportParsed, REFERENCE_HEADER, Report, parse_report};
