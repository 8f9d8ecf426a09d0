//! `kumo.dns.lookup_mx`, `lookup_addr`, `lookup_txt`, `lookup_ptr`: the
//! daemon's own resolver (the one delivery uses, with its cache and its
//! `configure_resolver` servers), as async functions that yield while the
//! query is out.

use arc_swap::ArcSwapOption;
use mlua::{Lua, Table};
use petrel_dns::{DnsError, Resolver};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The resolver policies use; the daemon sets it once it has built its
/// own. Until then (`petrel validate`, a policy's `init`) the system
/// resolver is used.
#[derive(Default)]
pub(crate) struct DnsSlot(ArcSwapOption<Arc<dyn Resolver>>);

impl DnsSlot {
    pub(crate) fn set(&self, resolver: Arc<dyn Resolver>) {
        self.0.store(Some(Arc::new(resolver)));
    }

    fn get(&self) -> mlua::Result<Arc<dyn Resolver>> {
        if let Some(resolver) = self.0.load_full() {
            return Ok((*resolver).clone());
        }
        let system: Arc<dyn Resolver> = Arc::new(petrel_dns::HickoryResolver::system().map_err(failed)?);
        self.0.store(Some(Arc::new(system.clone())));
        Ok(system)
    }
}

fn failed(e: DnsError) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

fn resolver(lua: &Lua) -> mlua::Result<Arc<dyn Resolver>> {
    let slot = lua.app_data_ref::<Arc<DnsSlot>>().map(|s| s.clone());
    match slot {
        Some(slot) => slot.get(),
        None => Err(mlua::Error::runtime("kumo.dns is not available in this context")),
    }
}

/// The optional resolver name argument: only the default one exists.
fn check_resolver_name(name: Option<String>) -> mlua::Result<()> {
    match name {
        None => Ok(()),
        Some(name) => Err(mlua::Error::runtime(format!(
            "kumo.dns: resolver {name:?}: alternate resolvers (kumo.dns.define_resolver) are not supported by Petrel yet"
        ))),
    }
}

async fn lookup_mx(lua: Lua, (domain, name): (String, Option<String>)) -> mlua::Result<Table> {
    check_resolver_name(name)?;
    let literal = petrel_dns::MxPlan::literal(&domain);
    let is_literal = literal.is_some();
    let plan = match literal {
        Some(plan) => plan,
        None => resolver(&lua)?.resolve_mx(&domain).await.map_err(failed)?,
    };
    let by_pref = lua.create_table()?;
    let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for host in &plan.hosts {
        groups.entry(host.preference).or_default().push(format!("{}.", host.name));
    }
    let mut hosts = Vec::new();
    for (preference, mut names) in groups {
        names.sort();
        hosts.extend(names.iter().cloned());
        by_pref.set(preference, names)?;
    }
    let out = lua.create_table()?;
    out.set("by_pref", by_pref)?;
    out.set("hosts", hosts)?;
    out.set("site_name", plan.site())?;
    out.set("domain_name", format!("{}.", domain.trim_end_matches('.')))?;
    out.set("is_domain_literal", is_literal)?;
    out.set("is_mx", !is_literal && !plan.implicit)?;
    out.set("mta_sts", "None")?;
    Ok(out)
}

async fn lookup_addr(
    lua: Lua,
    (host, name, strategy): (String, Option<String>, Option<String>),
) -> mlua::Result<Vec<String>> {
    check_resolver_name(name)?;
    if let Some(strategy) = strategy {
        return Err(mlua::Error::runtime(format!(
            "kumo.dns.lookup_addr: the lookup strategy {strategy:?} is not supported by Petrel yet"
        )));
    }
    let ips = resolver(&lua)?.resolve_ip(&host).await.map_err(failed)?;
    Ok(ips.iter().map(IpAddr::to_string).collect())
}

async fn lookup_txt(lua: Lua, (domain, name): (String, Option<String>)) -> mlua::Result<Vec<String>> {
    check_resolver_name(name)?;
    resolver(&lua)?.resolve_txt(&domain).await.map_err(failed)
}

async fn lookup_ptr(lua: Lua, (ip, name): (String, Option<String>)) -> mlua::Result<Vec<String>> {
    check_resolver_name(name)?;
    let ip: IpAddr =
        ip.parse().map_err(|_| mlua::Error::runtime(format!("kumo.dns.lookup_ptr: {ip:?} is not an IP address")))?;
    resolver(&lua)?.resolve_ptr(ip).await.map_err(failed)
}

fn parse_ip(what: &str, text: &str) -> mlua::Result<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| petrel_dns::domain_literal(text))
        .ok_or_else(|| mlua::Error::runtime(format!("{what}: {text:?} is not an IP address")))
}

/// `1.2.3.4` → `4.3.2.1`; IPv6 nibble by nibble.
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> =
                v6.octets().iter().rev().flat_map(|b| [b & 0xf, b >> 4]).map(|n| format!("{n:x}")).collect();
            nibbles.join(".")
        }
    }
}

fn ptr_host(ip: IpAddr) -> String {
    let zone = if ip.is_ipv4() { "in-addr.arpa" } else { "ip6.arpa" };
    format!("{}.{zone}", reversed(ip))
}

/// `kumo.dns.rbl_lookup(ip, base)`: the listing address and its TXT reason,
/// or nil when the address is not listed.
async fn rbl_lookup(
    lua: Lua,
    (ip, base, name): (String, String, Option<String>),
) -> mlua::Result<(Option<String>, Option<String>)> {
    check_resolver_name(name)?;
    let query = format!("{}.{}", reversed(parse_ip("kumo.dns.rbl_lookup", &ip)?), base.trim_end_matches('.'));
    let resolver = resolver(&lua)?;
    match resolver.resolve_ip(&query).await {
        Ok(addresses) if !addresses.is_empty() => {
            let reason = resolver.resolve_txt(&query).await.ok().and_then(|t| t.into_iter().next());
            Ok((Some(addresses[0].to_string()), reason))
        }
        Ok(_) | Err(DnsError::NxDomain(_) | DnsError::NoAddress(_)) => Ok((None, None)),
        Err(e) => Err(failed(e)),
    }
}

/// Add the lookups to the `kumo.dns` table.
pub(crate) fn install(lua: &Lua, dns: &Table) -> mlua::Result<()> {
    dns.set("reverse_ip", lua.create_function(|_, ip: String| Ok(reversed(parse_ip("kumo.dns.reverse_ip", &ip)?)))?)?;
    dns.set("ptr_host", lua.create_function(|_, ip: String| Ok(ptr_host(parse_ip("kumo.dns.ptr_host", &ip)?)))?)?;
    dns.set("rbl_lookup", lua.create_async_function(rbl_lookup)?)?;
    dns.set("lookup_mx", lua.create_async_function(lookup_mx)?)?;
    dns.set("lookup_addr", lua.create_async_function(lookup_addr)?)?;
    dns.set("lookup_txt", lua.create_async_function(lookup_txt)?)?;
    dns.set("lookup_ptr", lua.create_async_function(lookup_ptr)?)?;
    Ok(())
}
