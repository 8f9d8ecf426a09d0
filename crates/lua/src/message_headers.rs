//! The header methods of the message object beyond get/prepend/append/
//! remove: address headers, every header, importing `X-` headers into
//! meta, conformance checks and fixes, scheduling headers.

use mlua::{MetaMethod, UserData, UserDataFields, UserDataMethods, Value};
use petrel_message::{HeaderMailbox, Issue, Message, address_header, all_headers, remove_headers_where};
use std::sync::Arc;

/// A parsed address header (`msg:from_header()`): the single-address
/// accessors raise when the header holds more or fewer than one mailbox.
pub(crate) struct LuaAddressHeader(Vec<HeaderMailbox>);

/// One mailbox of an address header's `list`.
struct LuaHeaderMailbox(HeaderMailbox);

impl LuaAddressHeader {
    fn single(&self) -> mlua::Result<&HeaderMailbox> {
        match self.0.as_slice() {
            [one] => Ok(one),
            list => Err(mlua::Error::runtime(format!(
                "the address header holds {} addresses, not one; use .list",
                list.len()
            ))),
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl UserData for LuaAddressHeader {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("user", |_, h| Ok(h.single()?.user().map(str::to_string)));
        fields.add_field_method_get("domain", |_, h| Ok(h.single()?.domain().map(str::to_string)));
        fields.add_field_method_get("email", |_, h| Ok(h.single()?.address.clone()));
        fields.add_field_method_get("name", |_, h| Ok(h.single()?.name.clone()));
        fields.add_field_method_get("list", |_, h| Ok(h.0.iter().cloned().map(LuaHeaderMailbox).collect::<Vec<_>>()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, h, ()| Ok(to_json(&h.0)));
    }
}

impl UserData for LuaHeaderMailbox {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("user", |_, m| Ok(m.0.user().map(str::to_string)));
        fields.add_field_method_get("domain", |_, m| Ok(m.0.domain().map(str::to_string)));
        fields.add_field_method_get("email", |_, m| Ok(m.0.address.clone()));
        fields.add_field_method_get("name", |_, m| Ok(m.0.name.clone()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, m, ()| Ok(to_json(&m.0)));
    }
}

fn data(m: &Message) -> &[u8] {
    m.data.as_deref().unwrap_or_default()
}

fn address(m: &Message, name: &str) -> Option<LuaAddressHeader> {
    address_header(data(m), name).map(LuaAddressHeader)
}

/// `X-Campaign-ID` → `x_campaign_id`, the meta key KumoMTA uses.
fn meta_key(header: &str) -> String {
    header.to_ascii_lowercase().replace('-', "_")
}

/// Header names a list argument selects, or every `X-` header.
fn selects(names: &Option<Vec<String>>, header: &str) -> bool {
    match names {
        Some(list) => list.iter().any(|n| n.eq_ignore_ascii_case(header)),
        None => header.len() > 2 && header[..2].eq_ignore_ascii_case("x-"),
    }
}

fn import_x_headers(m: &mut Message, names: Option<Vec<String>>) -> mlua::Result<()> {
    for (name, value) in all_headers(data(m)) {
        if selects(&names, &name) {
            m.set_meta(meta_key(&name), value.into());
        }
    }
    Ok(())
}

fn remove_x_headers(m: &mut Message, names: Option<Vec<String>>) {
    let edited = remove_headers_where(data(m), |name| selects(&names, name));
    m.set_data(Arc::from(edited));
}

/// `msg:check_fix_conformance(CHECKS, FIXES)`: the message naming the
/// checked issues found (for `kumo.reject`), else nil after applying the
/// fixes asked for. Fixes that would rebuild the message are refused.
fn check_fix_conformance(m: &mut Message, checks: &str, fixes: &str) -> mlua::Result<Option<String>> {
    let checks = Issue::parse_set(checks).map_err(|e| mlua::Error::runtime(format!("check_fix_conformance: {e}")))?;
    let fixes = Issue::parse_set(fixes).map_err(|e| mlua::Error::runtime(format!("check_fix_conformance: {e}")))?;
    if let Some(unfixable) = fixes.iter().find(|i| !i.is_fixable()) {
        return Err(mlua::Error::runtime(format!(
            "check_fix_conformance: fixing {unfixable} (rebuilding the message) is not supported by Petrel yet"
        )));
    }
    let found = petrel_message::conformance_issues(data(m));
    let failed: Vec<String> = found.iter().filter(|i| checks.contains(i)).map(Issue::to_string).collect();
    if !failed.is_empty() {
        return Ok(Some(format!("Message has conformance issues: {}", failed.join("|"))));
    }
    let to_fix: Vec<Issue> = found.into_iter().filter(|i| fixes.contains(i)).collect();
    if !to_fix.is_empty() {
        let host = m.sender.domain().to_string();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let fixed = petrel_message::fix_conformance(data(m), &to_fix, &host).map_err(mlua::Error::external)?;
        m.set_data(Arc::from(fixed));
    }
    Ok(None)
}

/// `msg:import_scheduling_header(NAME, REMOVE)`: nil when the header is
/// absent; delivery windows and deferred first attempts are not built, so a
/// message that carries one is refused rather than sent outside its window.
fn import_scheduling_header(m: &mut Message, name: &str, remove: bool) -> mlua::Result<Value> {
    if petrel_message::first_header(data(m), name).is_none() {
        return Ok(Value::Nil);
    }
    let _ = remove;
    Err(mlua::Error::runtime(format!(
        "import_scheduling_header: the message has a {name} header, but scheduled delivery is not supported by Petrel yet"
    )))
}

/// Add the methods to a userdata that holds a message.
pub(crate) fn add_methods<T, M>(methods: &mut M)
where
    T: AsRef<Message> + AsMut<Message>,
    M: UserDataMethods<T>,
{
    methods.add_method("from_header", |_, m, ()| Ok(address(m.as_ref(), "From")));
    methods.add_method("to_header", |_, m, ()| Ok(address(m.as_ref(), "To")));
    methods.add_method("get_address_header", |_, m, name: String| Ok(address(m.as_ref(), &name)));
    methods.add_method("get_all_headers", |_, m, ()| {
        Ok(all_headers(data(m.as_ref())).into_iter().map(|(n, v)| vec![n, v]).collect::<Vec<_>>())
    });
    methods.add_method("get_all_named_header_values", |_, m, name: String| {
        let values = all_headers(data(m.as_ref())).into_iter().filter(|(n, _)| n.eq_ignore_ascii_case(&name));
        Ok(values.map(|(_, v)| v).collect::<Vec<_>>())
    });
    methods.add_method_mut("import_x_headers", |_, m, names: Option<Vec<String>>| import_x_headers(m.as_mut(), names));
    methods.add_method_mut("remove_x_headers", |_, m, names: Option<Vec<String>>| {
        remove_x_headers(m.as_mut(), names);
        Ok(())
    });
    methods.add_method_mut("check_fix_conformance", |_, m, (checks, fixes): (String, Option<String>)| {
        check_fix_conformance(m.as_mut(), &checks, fixes.as_deref().unwrap_or(""))
    });
    methods.add_method_mut("import_scheduling_header", |_, m, (name, remove): (String, Option<bool>)| {
        import_scheduling_header(m.as_mut(), &name, remove.unwrap_or(false))
    });
    // Every spooled message is written durably before it is acknowledged,
    // so forcing a sync asks for nothing more.
    methods.add_method("set_force_sync", |_, _, _force: bool| Ok(()));
    methods.add_method("num_attempts", |_, m, ()| Ok(m.as_ref().num_attempts));
}
