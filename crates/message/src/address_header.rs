//! Address headers (`From`, `To`, `Reply-To`, …) parsed into mailboxes,
//! with mail-parser doing the RFC 5322 work (groups, quoting, comments,
//! encoded words).

use mail_parser::MessageParser;

/// One mailbox of an address header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeaderMailbox {
    /// The display name, decoded.
    pub name: Option<String>,
    /// `user@domain`, when the entry has one.
    pub address: Option<String>,
}

impl HeaderMailbox {
    /// The part of the address before the last `@`.
    pub fn user(&self) -> Option<&str> {
        self.address.as_deref().and_then(|a| a.rsplit_once('@')).map(|(user, _)| user)
    }
    /// The part of the address after the last `@`.
    pub fn domain(&self) -> Option<&str> {
        self.address.as_deref().and_then(|a| a.rsplit_once('@')).map(|(_, domain)| domain)
    }
}

/// The mailboxes of the first header `name` of `data` (members of groups
/// included, in order); `None` when there is no such header.
pub fn address_header(data: &[u8], name: &str) -> Option<Vec<HeaderMailbox>> {
    let value = crate::first_header(data, name)?;
    // Parse the value as the To header of a message of one header, so any
    // header name gets the address grammar.
    let wrapped = format!("To: {value}\r\n\r\n");
    let parsed = MessageParser::default().parse(wrapped.as_bytes())?;
    let list = parsed
        .to()
        .map(|address| {
            address
                .iter()
                .map(|addr| HeaderMailbox {
                    name: addr.name.as_ref().map(|n| n.to_string()),
                    address: addr.address.as_ref().map(|a| a.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_groups() {
        let data = b"From: \"John Smith\" <john.smith@example.com>\r\nTo: a@x.example, Team: b@y.example, c@z.example;\r\n\r\nbody";
        let from = address_header(data, "from").unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].name.as_deref(), Some("John Smith"));
        assert_eq!(from[0].user(), Some("john.smith"));
        assert_eq!(from[0].domain(), Some("example.com"));
        let to = address_header(data, "To").unwrap();
        let addresses: Vec<_> = to.iter().filter_map(|m| m.address.as_deref()).collect();
        assert_eq!(addresses, ["a@x.example", "b@y.example", "c@z.example"]);
        assert!(address_header(data, "Cc").is_none());
    }
}
