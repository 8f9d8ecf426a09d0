//! Telling "not supported by Petrel yet" apart from "no such option".
//!
//! Every spec rejects keys it does not know. For a key KumoMTA documents
//! for the function (`documented.rs`, generated from its reference) the
//! error says Petrel does not implement it yet, so an operator bringing a
//! KumoMTA policy learns at validate time which settings would not apply,
//! rather than reading a bare "unknown field".

use mlua::{Lua, LuaSerdeExt, Value};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// The field names of a `#[derive(Deserialize)]` struct, read by asking it
/// to deserialize from a deserializer that only records them.
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Introspect(&mut fields));
    fields.unwrap_or(&[])
}

struct Introspect<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("introspection only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("introspection only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The documented options of `function` (a `make_*` name or Petrel's
/// `define_egress_*`, which take the `make_egress_*` options).
fn documented(function: &str) -> &'static [&'static str] {
    let name = match function {
        "define_egress_source" => "make_egress_source",
        "define_egress_pool" => "make_egress_pool",
        other => other,
    };
    crate::documented::OPTIONS.iter().find(|(f, _)| *f == name).map_or(&[], |(_, options)| options)
}

/// The first key of `value` that KumoMTA documents for `function` but the
/// spec `T` does not take.
pub(crate) fn unsupported<T: DeserializeOwned>(function: &str, value: &Value) -> Option<String> {
    let Value::Table(table) = value else { return None };
    let documented = documented(function);
    if documented.is_empty() {
        return None;
    }
    let known = fields_of::<T>();
    let mut missing: Vec<String> = table
        .pairs::<String, Value>()
        .filter_map(Result::ok)
        .map(|(key, _)| key)
        .filter(|key| documented.contains(&key.as_str()) && !known.contains(&key.as_str()))
        .collect();
    missing.sort();
    missing.into_iter().next()
}

/// Parse a spec table, naming the function and line on failure.
pub(crate) fn spec<T: DeserializeOwned>(lua: &Lua, what: &str, value: Value) -> Result<T, String> {
    if let Some(key) = unsupported::<T>(what, &value) {
        return Err(format!(
            "{}: {what}: option `{key}` is documented by KumoMTA but not supported by Petrel yet",
            crate::error::caller_location(lua)
        ));
    }
    lua.from_value(value).map_err(|e| format!("{}: {what}: {e}", crate::error::caller_location(lua)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Spec {
        name: String,
        ttl: Option<u32>,
    }

    #[test]
    fn fields_are_read_from_the_derive_and_documented_gaps_are_named() {
        assert_eq!(fields_of::<Spec>(), &["name", "ttl"]);
        let lua = mlua::Lua::new();
        let value: Value = lua.load("{ name = 'a', socks5_proxy_server = 'x:1', bogus = 1 }").eval().unwrap();
        assert_eq!(unsupported::<Spec>("make_egress_source", &value).as_deref(), Some("socks5_proxy_server"));
        let value: Value = lua.load("{ name = 'a', bogus = 1 }").eval().unwrap();
        assert_eq!(unsupported::<Spec>("make_egress_source", &value), None, "undocumented keys stay plain errors");
    }
}
