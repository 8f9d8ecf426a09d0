//! Rust values handed to Lua: the message, its addresses, connection meta,
//! and the opaque results of `make_queue_config` / `make_egress_path`.

use mlua::{Lua, LuaSerdeExt, UserData, UserDataFields, UserDataMethods, Value};
use petrel_delivery::EgressPathConfig;
use petrel_message::{EnvelopeAddress, Message, append_header, first_header, prepend_header, remove_headers};
use petrel_queue::QueueConfig;
use std::sync::Arc;

pub(crate) struct LuaMessage(pub Message);
pub(crate) struct LuaAddress(pub EnvelopeAddress);
/// Connection meta as handlers see it: built as a map only when a handler
/// first reads or writes it (most reception handlers never do).
pub(crate) struct LuaConnMeta {
    map: Option<serde_json::Map<String, serde_json::Value>>,
    make: Option<Box<dyn FnOnce() -> serde_json::Map<String, serde_json::Value> + Send + Sync>>,
}

impl LuaConnMeta {
    /// Meta built on first use by `make`.
    pub(crate) fn lazy(
        make: impl FnOnce() -> serde_json::Map<String, serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        Self { map: None, make: Some(Box::new(make)) }
    }

    fn map(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
        let make = &mut self.make;
        self.map.get_or_insert_with(|| make.take().map(|f| f()).unwrap_or_default())
    }
}
#[derive(Clone)]
pub(crate) struct LuaQueueConfig(pub QueueConfig);
#[derive(Clone)]
pub(crate) struct LuaEgressPath(pub EgressPathConfig);
#[derive(Clone)]
pub(crate) struct LuaListenerDomain(pub petrel_smtp_server::ListenerDomain);

impl UserData for LuaListenerDomain {}

impl AsRef<Message> for LuaMessage {
    fn as_ref(&self) -> &Message {
        &self.0
    }
}

impl AsMut<Message> for LuaMessage {
    fn as_mut(&mut self) -> &mut Message {
        &mut self.0
    }
}

impl UserData for LuaQueueConfig {}
impl UserData for LuaEgressPath {}

fn json_to_lua(lua: &Lua, value: Option<&serde_json::Value>) -> mlua::Result<Value> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Value::Nil),
        Some(v) => lua.to_value(v),
    }
}

/// A meta value as JSON. Strings, integers and booleans (nearly every
/// `set_meta`) are converted here; serde handles the rest.
fn json_of(lua: &Lua, value: Value) -> mlua::Result<serde_json::Value> {
    match value {
        Value::String(s) => Ok(serde_json::Value::String(s.to_str()?.to_string())),
        Value::Integer(i) => Ok(serde_json::Value::from(i)),
        Value::Boolean(b) => Ok(serde_json::Value::Bool(b)),
        other => lua.from_value(other),
    }
}

fn parse_address(text: &str) -> mlua::Result<EnvelopeAddress> {
    EnvelopeAddress::parse(text).map_err(mlua::Error::external)
}

/// Accepts an address userdata or a string.
fn address_arg(value: Value) -> mlua::Result<EnvelopeAddress> {
    match value {
        Value::String(s) => parse_address(&s.to_str()?),
        Value::UserData(ud) => Ok(ud.borrow::<LuaAddress>()?.0.clone()),
        other => Err(mlua::Error::runtime(format!("expected an address, got {}", other.type_name()))),
    }
}

impl UserData for LuaAddress {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("user", |lua, a| lua.create_string(a.0.user()));
        fields.add_field_method_get("domain", |lua, a| lua.create_string(a.0.domain()));
        fields.add_field_method_get("email", |lua, a| lua.create_string(a.0.email()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, a, ()| Ok(a.0.email().to_string()));
    }
}

impl UserData for LuaConnMeta {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("get_meta", |lua, c, key: String| json_to_lua(lua, c.map().get(&key)));
        methods.add_method_mut("set_meta", |lua, c, (key, value): (String, Value)| {
            c.map().insert(key, json_of(lua, value)?);
            Ok(())
        });
    }
}

fn edit(m: &mut LuaMessage, f: impl FnOnce(&[u8]) -> Result<Vec<u8>, petrel_message::HeaderError>) -> mlua::Result<()> {
    let data = m.0.data.as_deref().unwrap_or_default();
    let edited = f(data).map_err(mlua::Error::external)?;
    m.0.set_data(Arc::from(edited));
    Ok(())
}

impl UserData for LuaMessage {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("id", |_, m, ()| Ok(m.0.id.to_string()));
        methods.add_method("sender", |_, m, ()| Ok(LuaAddress(m.0.sender.clone())));
        methods.add_method("recipient", |_, m, ()| Ok(LuaAddress(m.0.recipient.clone())));
        methods.add_method("recipient_list", |_, m, ()| Ok(vec![LuaAddress(m.0.recipient.clone())]));
        methods.add_method_mut("set_sender", |_, m, a: Value| {
            m.0.sender = address_arg(a)?;
            Ok(())
        });
        methods.add_method_mut("set_recipient", |_, m, a: Value| {
            m.0.recipient = address_arg(a)?;
            Ok(())
        });
        methods.add_method("get_meta", |lua, m, key: String| json_to_lua(lua, m.0.meta.get(&key)));
        methods.add_method_mut("set_meta", |lua, m, (key, value): (String, Value)| {
            m.0.set_meta(key, json_of(lua, value)?);
            Ok(())
        });
        methods.add_method("queue_name", |_, m, ()| Ok(m.0.queue_name()));
        methods.add_method("get_data", |lua, m, ()| lua.create_string(m.0.data.as_deref().unwrap_or_default()));
        methods.add_method_mut("set_data", |_, m, data: mlua::LuaString| {
            m.0.set_data(Arc::from(&data.as_bytes()[..]));
            Ok(())
        });
        methods.add_method("get_first_named_header_value", |_, m, name: String| {
            Ok(first_header(m.0.data.as_deref().unwrap_or_default(), &name))
        });
        methods.add_method_mut("prepend_header", |_, m, (name, value): (String, String)| {
            edit(m, |d| prepend_header(d, &name, &value))
        });
        methods.add_method_mut("append_header", |_, m, (name, value): (String, String)| {
            edit(m, |d| append_header(d, &name, &value))
        });
        methods
            .add_method_mut("remove_all_named_headers", |_, m, name: String| edit(m, |d| Ok(remove_headers(d, &name))));
        crate::message_headers::add_methods(methods);
        crate::dkim::add_methods(methods);
    }
}

/// An event result that is either our userdata or a plain table.
pub(crate) fn from_result<T: 'static + Clone, S: serde::de::DeserializeOwned>(
    lua: &Lua,
    value: Value,
    parse: impl FnOnce(S) -> Result<T, String>,
) -> mlua::Result<Option<T>> {
    match value {
        Value::Nil => Ok(None),
        Value::UserData(ud) => Ok(Some(ud.borrow::<T>()?.clone())),
        table @ Value::Table(_) => {
            let spec: S = lua.from_value(table)?;
            parse(spec).map(Some).map_err(mlua::Error::runtime)
        }
        other => Err(mlua::Error::runtime(format!("expected a config object, got {}", other.type_name()))),
    }
}
