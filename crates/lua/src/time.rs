//! `kumo.time`: `Time` (a UTC instant) and `TimeDelta` (a signed interval)
//! objects with KumoMTA's fields, formatting and arithmetic.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mlua::{Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value};

#[derive(Clone, Copy, PartialEq)]
struct LuaTime(DateTime<Utc>);

#[derive(Clone, Copy, PartialEq)]
struct LuaDelta(TimeDelta);

fn error(what: &str, e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("kumo.time.{what}: {e}"))
}

fn human(delta: TimeDelta) -> String {
    let sign = if delta < TimeDelta::zero() { "-" } else { "" };
    let magnitude = delta.abs().to_std().unwrap_or_default();
    format!("{sign}{}", humantime::format_duration(magnitude))
}

impl UserData for LuaTime {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        use chrono::{Datelike, Timelike};
        fields.add_field_method_get("year", |_, t| Ok(t.0.year()));
        fields.add_field_method_get("month", |_, t| Ok(t.0.month()));
        fields.add_field_method_get("day", |_, t| Ok(t.0.day()));
        fields.add_field_method_get("hour", |_, t| Ok(t.0.hour()));
        fields.add_field_method_get("minute", |_, t| Ok(t.0.minute()));
        fields.add_field_method_get("second", |_, t| Ok(t.0.second()));
        fields.add_field_method_get("unix_timestamp", |_, t| Ok(t.0.timestamp()));
        fields.add_field_method_get("unix_timestamp_millis", |_, t| Ok(t.0.timestamp_millis()));
        fields.add_field_method_get("rfc2822", |_, t| Ok(t.0.to_rfc2822()));
        fields.add_field_method_get("rfc3339", |_, t| Ok(t.0.to_rfc3339()));
        fields.add_field_method_get("elapsed", |_, t| Ok(LuaDelta(Utc::now() - t.0)));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, t, ()| Ok(t.0.format("%Y-%m-%d %H:%M:%S UTC").to_string()));
        methods.add_meta_method(MetaMethod::Eq, |_, t, other: mlua::UserDataRef<LuaTime>| Ok(*t == *other));
        methods.add_meta_method(MetaMethod::Add, |_, t, d: mlua::UserDataRef<LuaDelta>| Ok(LuaTime(t.0 + d.0)));
        methods.add_meta_method(MetaMethod::Sub, |lua, t, other: Value| match &other {
            Value::UserData(ud) if ud.is::<LuaDelta>() => {
                let d = ud.borrow::<LuaDelta>()?;
                Ok(mlua::IntoLua::into_lua(LuaTime(t.0 - d.0), lua)?)
            }
            Value::UserData(ud) if ud.is::<LuaTime>() => {
                let o = ud.borrow::<LuaTime>()?;
                Ok(mlua::IntoLua::into_lua(LuaDelta(t.0 - o.0), lua)?)
            }
            _ => Err(error("Time", "subtract a Time or a TimeDelta")),
        });
        methods.add_method("format", |_, t, format: String| {
            use std::fmt::Write;
            let mut out = String::new();
            write!(out, "{}", t.0.format(&format)).map_err(|_| error("format", format!("bad format {format:?}")))?;
            Ok(out)
        });
    }
}

impl UserData for LuaDelta {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("seconds", |_, d| Ok(d.0.as_seconds_f64()));
        fields.add_field_method_get("milliseconds", |_, d| Ok(d.0.num_milliseconds()));
        fields.add_field_method_get("microseconds", |_, d| Ok(d.0.num_microseconds()));
        fields.add_field_method_get("nanoseconds", |_, d| Ok(d.0.num_nanoseconds()));
        fields.add_field_method_get("human", |_, d| Ok(human(d.0)));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(human(d.0)));
        methods.add_meta_method(MetaMethod::Eq, |_, d, o: mlua::UserDataRef<LuaDelta>| Ok(*d == *o));
        methods.add_meta_method(MetaMethod::Add, |_, d, o: mlua::UserDataRef<LuaDelta>| Ok(LuaDelta(d.0 + o.0)));
        methods.add_meta_method(MetaMethod::Sub, |_, d, o: mlua::UserDataRef<LuaDelta>| Ok(LuaDelta(d.0 - o.0)));
    }
}

fn parse_duration(_: &Lua, value: Value) -> mlua::Result<LuaDelta> {
    let seconds = match &value {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        Value::String(s) => {
            let text = s.to_str()?.trim().to_string();
            let (negative, text) = match text.strip_prefix('-') {
                Some(rest) => (true, rest.trim().to_string()),
                None => (false, text),
            };
            let d = humantime::parse_duration(&text).map_err(|e| error("parse_duration", e))?;
            let s = d.as_secs_f64();
            if negative { -s } else { s }
        }
        other => return Err(error("parse_duration", format!("a number or a string, not a {}", other.type_name()))),
    };
    TimeDelta::try_milliseconds((seconds * 1000.0).round() as i64)
        .map(LuaDelta)
        .ok_or_else(|| error("parse_duration", "out of range"))
}

fn from_unix_timestamp(_: &Lua, seconds: f64) -> mlua::Result<LuaTime> {
    let millis = (seconds * 1000.0).round() as i64;
    Utc.timestamp_millis_opt(millis).single().map(LuaTime).ok_or_else(|| error("from_unix_timestamp", "out of range"))
}

/// Add `kumo.time`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set("now", lua.create_function(|_, ()| Ok(LuaTime(Utc::now())))?)?;
    t.set("from_unix_timestamp", lua.create_function(from_unix_timestamp)?)?;
    t.set("parse_duration", lua.create_function(parse_duration)?)?;
    t.set(
        "parse_rfc3339",
        lua.create_function(|_, s: String| {
            DateTime::parse_from_rfc3339(s.trim()).map(|t| LuaTime(t.to_utc())).map_err(|e| error("parse_rfc3339", e))
        })?,
    )?;
    t.set(
        "parse_rfc2822",
        lua.create_function(|_, s: String| {
            DateTime::parse_from_rfc2822(s.trim()).map(|t| LuaTime(t.to_utc())).map_err(|e| error("parse_rfc2822", e))
        })?,
    )?;
    t.set(
        "with_ymd_hms",
        lua.create_function(|_, (y, mo, d, h, mi, s): (i32, u32, u32, u32, u32, u32)| {
            Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .map(LuaTime)
                .ok_or_else(|| error("with_ymd_hms", "no such date"))
        })?,
    )?;
    t.set("sleep", kumo.get::<mlua::Function>("sleep")?)?;
    kumo.set("time", t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_examples_hold() {
        let lua = mlua::Lua::new();
        let kumo = lua.create_table().unwrap();
        kumo.set("sleep", lua.create_function(|_, ()| Ok(())).unwrap()).unwrap();
        super::install(&lua, &kumo).unwrap();
        lua.globals().set("kumo", kumo).unwrap();
        lua.load(
            r#"
            local t = kumo.time.with_ymd_hms(2000, 01, 02, 03, 04, 05)
            assert(tostring(t) == '2000-01-02 03:04:05 UTC')
            assert(t.year == 2000 and t.month == 1 and t.day == 2 and t.hour == 3 and t.minute == 4 and t.second == 5)
            assert(t.unix_timestamp == 946782245)
            assert(t.rfc2822 == 'Sun, 2 Jan 2000 03:04:05 +0000')
            assert(t.rfc3339 == '2000-01-02T03:04:05+00:00')
            local delta1 = kumo.time.parse_duration(20)
            local delta2 = kumo.time.parse_duration '10 seconds'
            assert((delta2 - delta1).seconds == -10)
            assert(tostring(kumo.time.parse_duration '5m') == '5m')
            local later = t + kumo.time.parse_duration '1h'
            assert(later.hour == 4 and (later - t).seconds == 3600 and later - kumo.time.parse_duration(3600) == t)
            assert(kumo.time.from_unix_timestamp(946782245) == t)
            assert(kumo.time.parse_rfc3339('2000-01-02T03:04:05Z') == t)
            assert(kumo.time.parse_rfc2822('Sun, 2 Jan 2000 03:04:05 +0000') == t)
            assert(t:format('%H:%M') == '03:04')
            assert(kumo.time.now().elapsed.seconds >= 0)
            "#,
        )
        .exec()
        .unwrap();
    }
}
