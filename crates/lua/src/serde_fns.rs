//! Data formats for policies: `kumo.serde.{json,toml,yaml}_*` and the older
//! top-level names (`kumo.json_parse`, `kumo.toml_load`, …) KumoMTA keeps.
//!
//! Loading a file notes it as one of the policy's data files, so editing it
//! triggers a reload like editing the policy does.

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde::Serialize;

/// How a Lua value becomes data: tables without a key 1 and empty tables
/// are maps, nil is skipped in maps, as KumoMTA encodes them.
fn to_json(lua: &Lua, value: Value) -> mlua::Result<serde_json::Value> {
    lua.from_value(value)
}

fn from_data<T: Serialize>(lua: &Lua, value: &T) -> mlua::Result<Value> {
    lua.to_value_with(
        value,
        mlua::serde::SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false),
    )
}

fn error(what: &str, e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{what}: {e}"))
}

/// JSON as KumoMTA reads it: `/* */`, `//` and `#` comments are allowed.
pub(crate) fn json_parse(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let stripped = json_comments::StripComments::new(text.as_bytes());
    let json: serde_json::Value = serde_json::from_reader(stripped).map_err(|e| error("json_parse", e))?;
    from_data(lua, &json)
}

fn json_encode(lua: &Lua, value: Value) -> mlua::Result<String> {
    serde_json::to_string(&to_json(lua, value)?).map_err(|e| error("json_encode", e))
}

fn json_encode_pretty(lua: &Lua, value: Value) -> mlua::Result<String> {
    serde_json::to_string_pretty(&to_json(lua, value)?).map_err(|e| error("json_encode_pretty", e))
}

fn toml_parse(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let value: toml::Table = toml::from_str(text).map_err(|e| error("toml_parse", e))?;
    from_data(lua, &value)
}

fn toml_encode(lua: &Lua, value: Value) -> mlua::Result<String> {
    toml::to_string(&to_json(lua, value)?).map_err(|e| error("toml_encode", e))
}

fn toml_encode_pretty(lua: &Lua, value: Value) -> mlua::Result<String> {
    toml::to_string_pretty(&to_json(lua, value)?).map_err(|e| error("toml_encode_pretty", e))
}

fn yaml_parse(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let value: serde_json::Value = serde_norway::from_str(text).map_err(|e| error("yaml_parse", e))?;
    from_data(lua, &value)
}

fn yaml_encode(lua: &Lua, value: Value) -> mlua::Result<String> {
    serde_norway::to_string(&to_json(lua, value)?).map_err(|e| error("yaml_encode", e))
}

/// Read a data file the policy depends on, naming it on failure.
pub(crate) fn read_data_file(lua: &Lua, what: &str, path: &str) -> mlua::Result<String> {
    let file = std::path::Path::new(path);
    crate::fingerprint::note_data_file(lua, file);
    let snapshot = lua.app_data_ref::<std::sync::Arc<crate::fingerprint::FileSnapshot>>().map(|s| s.clone());
    let bytes = match snapshot {
        Some(snapshot) => snapshot.read(file),
        None => std::fs::read(file).map(Into::into),
    }
    .map_err(|e| mlua::Error::runtime(format!("{what} {path}: {e}")))?;
    String::from_utf8(bytes.to_vec()).map_err(|e| mlua::Error::runtime(format!("{what} {path}: {e}")))
}

type Parser = fn(&Lua, &str) -> mlua::Result<Value>;
type Encoder = fn(&Lua, Value) -> mlua::Result<String>;

fn loader(lua: &Lua, what: &'static str, parse: Parser) -> mlua::Result<Function> {
    lua.create_function(move |lua, path: String| {
        let text = read_data_file(lua, what, &path)?;
        parse(lua, &text).map_err(|e| mlua::Error::runtime(format!("{path}: {e}")))
    })
}

/// Add the format functions to `kumo` and to `kumo.serde`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let serde = lua.create_table()?;
    let parsers: [(&str, Parser); 3] = [("json", json_parse), ("toml", toml_parse), ("yaml", yaml_parse)];
    for (format, parse) in parsers {
        let parse_name = format!("{format}_parse");
        let load_name = format!("{format}_load");
        let load_what: &'static str = match format {
            "json" => "json_load",
            "toml" => "toml_load",
            _ => "yaml_load",
        };
        serde
            .set(parse_name.as_str(), lua.create_function(move |lua, s: mlua::LuaString| parse(lua, &s.to_str()?))?)?;
        serde.set(load_name.as_str(), loader(lua, load_what, parse)?)?;
    }
    let encoders: [(&str, Encoder); 5] = [
        ("json_encode", json_encode),
        ("json_encode_pretty", json_encode_pretty),
        ("toml_encode", toml_encode),
        ("toml_encode_pretty", toml_encode_pretty),
        ("yaml_encode", yaml_encode),
    ];
    for (name, encode) in encoders {
        serde.set(name, lua.create_function(move |lua, v: Value| encode(lua, v))?)?;
    }
    // The older names KumoMTA still documents (yaml never had them).
    for name in [
        "json_parse",
        "json_load",
        "json_encode",
        "json_encode_pretty",
        "toml_parse",
        "toml_load",
        "toml_encode",
        "toml_encode_pretty",
    ] {
        kumo.set(name, serde.get::<Function>(name)?)?;
    }
    kumo.set("serde", serde)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_round_trip_through_lua() {
        crate::run_with(
            super::install,
            r#"
            local t = kumo.toml_parse('[source."ip-1"]\nsource_address = "10.0.0.1"\n[pool.p."ip-1"]\nweight = 2\n')
            assert(t.source['ip-1'].source_address == '10.0.0.1')
            assert(t.pool.p['ip-1'].weight == 2)
            local again = kumo.serde.toml_parse(kumo.toml_encode(t))
            assert(again.pool.p['ip-1'].weight == 2)
            local j = kumo.json_parse('{"a": [1, 2] /* c */, # shell\n "b": "x" // line\n}')
            assert(j.a[2] == 2 and j.b == 'x')
            assert(kumo.json_encode({1, 2}) == '[1,2]')
            assert(kumo.serde.json_encode_pretty({a = 1}):find('\n'))
            local y = kumo.serde.yaml_parse('a:\n  - 1\n  - two\n')
            assert(y.a[2] == 'two')
            assert(kumo.serde.yaml_parse(kumo.serde.yaml_encode({k = 'v'})).k == 'v')
            "#,
        )
        .unwrap();
    }

    #[test]
    fn parse_errors_say_which_function() {
        let err = crate::run_with(super::install, "kumo.toml_parse('[[x')").unwrap_err().to_string();
        assert!(err.contains("toml_parse"), "{err}");
    }
}
