//! An MX plan: the hosts to try, in order, and the site name they share.

use rand::seq::SliceRandom;

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Lower is tried first.
    pub preference: u16,
    /// The exchange's host name, without the trailing dot.
    pub name: String,
}

/// The destination hosts of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxPlan {
    /// Sorted by preference (lowest first).
    pub hosts: Vec<MxHost>,
    /// True when the domain has no MX and its own address is used.
    pub implicit: bool,
}

impl MxPlan {
    /// The site: the sorted set of host names. Domains served by the same
    /// hosts share a site, and so share ready queues and their limits.
    pub fn site(&self) -> String {
        let mut names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }

    /// Host names in the order to try them now: by preference, hosts of
    /// equal preference in random order (RFC 5321 §5.1) so load spreads.
    pub fn attempt_order(&self) -> Vec<String> {
        let mut rng = rand::rng();
        let mut out = Vec::with_capacity(self.hosts.len());
        for group in self.hosts.chunk_by(|a, b| a.preference == b.preference) {
            let mut names: Vec<String> = group.iter().map(|h| h.name.clone()).collect();
            names.shuffle(&mut rng);
            out.extend(names);
        }
        out
    }

    /// A plan from an explicit host list (a smart host): tried in order.
    pub fn in_order(hosts: &[String]) -> Self {
        let hosts = hosts.iter().enumerate().map(|(i, h)| MxHost { preference: i as u16, name: h.clone() }).collect();
        Self { hosts, implicit: false }
    }
}

/// The address of a domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`,
/// RFC 5321 §4.1.3), which names its host without DNS.
pub fn domain_literal(domain: &str) -> Option<std::net::IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")).unwrap_or(inner);
    inner.parse().ok()
}

impl MxPlan {
    /// The plan of a domain literal: its address is the one host.
    pub fn literal(domain: &str) -> Option<Self> {
        let ip = domain_literal(domain)?;
        Some(Self { hosts: vec![MxHost { preference: 0, name: ip.to_string() }], implicit: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_literals_name_their_address() {
        assert_eq!(domain_literal("[192.0.2.1]"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(domain_literal("[IPv6:2001:db8::1]"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(domain_literal("example.com"), None);
        assert_eq!(domain_literal("[not an ip]"), None);
        assert_eq!(MxPlan::literal("[127.0.0.9]").unwrap().attempt_order(), ["127.0.0.9"]);
    }

    fn plan(hosts: &[(u16, &str)]) -> MxPlan {
        let mut hosts: Vec<MxHost> =
            hosts.iter().map(|(p, n)| MxHost { preference: *p, name: n.to_string() }).collect();
        hosts.sort_by_key(|h| h.preference);
        MxPlan { hosts, implicit: false }
    }

    #[test]
    fn site_is_the_sorted_host_set() {
        assert_eq!(plan(&[(20, "b.mx"), (10, "a.mx")]).site(), "a.mx,b.mx");
        assert_eq!(plan(&[(10, "a.mx"), (20, "b.mx")]).site(), plan(&[(5, "b.mx"), (5, "a.mx")]).site());
    }

    #[test]
    fn equal_preferences_are_shuffled_but_groups_stay_ordered() {
        let p = plan(&[(10, "a"), (10, "b"), (10, "c"), (20, "z")]);
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let order = p.attempt_order();
            assert_eq!(order.last().map(String::as_str), Some("z"));
            firsts.insert(order[0].clone());
        }
        assert_eq!(firsts.len(), 3, "every equal-preference host comes first sometimes");
    }
}
