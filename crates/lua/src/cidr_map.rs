//! `kumo.cidr.make_map{...}`: a table from IP addresses to values where a
//! key may be a network (`10.0.0.0/24`); a lookup takes the most specific
//! network holding the address. Lookups accept `ip:port`, `[ip]` and
//! `[ip]:port`, as connection metadata spells them.

use ipnet::IpNet;
use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value};
use std::net::{IpAddr, SocketAddr};

#[derive(Default)]
struct CidrMap {
    entries: Vec<(IpNet, Value)>,
}

/// An address from `ip`, `ip:port`, `[ip]`, `[ip]:port`, `[IPv6:…]`.
fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    petrel_dns::domain_literal(text)
}

fn network(text: &str) -> Option<IpNet> {
    text.trim().parse::<IpNet>().ok().or_else(|| address(text).map(IpNet::from))
}

impl CidrMap {
    fn get(&self, key: &str) -> Option<&Value> {
        let ip = address(key)?;
        self.entries.iter().filter(|(net, _)| net.contains(&ip)).max_by_key(|(net, _)| net.prefix_len()).map(|(_, v)| v)
    }

    fn set(&mut self, key: &str, value: Value) -> mlua::Result<()> {
        let net = network(key)
            .ok_or_else(|| mlua::Error::runtime(format!("kumo.cidr map: {key:?} is not an address or network")))?;
        self.entries.retain(|(n, _)| *n != net);
        if !value.is_nil() {
            self.entries.push((net, value));
        }
        Ok(())
    }
}

impl UserData for CidrMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods
            .add_meta_method(MetaMethod::Index, |_, map, key: String| Ok(map.get(&key).cloned().unwrap_or(Value::Nil)));
        methods.add_meta_method_mut(MetaMethod::NewIndex, |_, map, (key, value): (String, Value)| map.set(&key, value));
        methods.add_meta_method(MetaMethod::Len, |_, map, ()| Ok(map.entries.len()));
    }
}

fn make_map(_: &Lua, seed: Option<Table>) -> mlua::Result<CidrMap> {
    let mut map = CidrMap::default();
    if let Some(seed) = seed {
        for pair in seed.pairs::<String, Value>() {
            let (key, value) = pair?;
            map.set(&key, value)?;
        }
    }
    Ok(map)
}

/// Add `kumo.cidr`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let module = lua.create_table()?;
    module.set("make_map", lua.create_function(make_map)?)?;
    kumo.set("cidr", module)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_most_specific_network_answers() {
        crate::run_with(
            super::install,
            r#"
            local cmap = kumo.cidr.make_map { ['127.0.0.0/24'] = 'loopback', ['10.0.0.0/8'] = 'lan' }
            cmap['10.0.0.0/24'] = '10. block'
            cmap['4.2.4.2'] = 4242
            assert(cmap['10.0.0.42'] == '10. block')
            assert(cmap['10.9.0.1'] == 'lan')
            assert(cmap['100.0.0.100'] == nil)
            assert(cmap['4.2.4.2'] == 4242)
            assert(cmap['127.0.0.1:25'] == 'loopback' and cmap['[127.0.0.1]'] == 'loopback')
            assert(cmap['not.set'] == nil)
            assert(not pcall(function() cmap['nonsense'] = 1 end))
            "#,
        )
        .unwrap();
    }
}
