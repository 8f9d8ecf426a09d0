//! Where mail for a domain goes: MX records through hickory-resolver,
//! ordered by preference with equal preferences shuffled, the implicit MX
//! (the domain's own A/AAAA) when there is none, and the null MX of RFC 7505
//! as a permanent refusal. Answers are cached for their TTL by hickory.

mod plan;
mod resolver;

pub use plan::{MxHost, MxPlan, domain_literal};
pub use resolver::{DnsError, HickoryResolver, Resolver};
