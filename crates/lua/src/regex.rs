//! `kumo.regex` (also `require 'kumo.regex'`): Rust regular expressions with
//! the fancy-regex extensions (look-around, back-references), compiled once
//! and used as an object.

use fancy_regex::{Captures, Regex};
use mlua::{Lua, Table, UserData, UserDataMethods, Value};

struct LuaRegex(Regex);

fn error(e: fancy_regex::Error) -> mlua::Error {
    mlua::Error::runtime(format!("regex: {e}"))
}

fn captures_table(lua: &Lua, re: &Regex, caps: &Captures<'_>) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for (index, group) in caps.iter().enumerate() {
        if let Some(m) = group {
            table.raw_set(index as i64, m.as_str())?;
        }
    }
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            table.raw_set(name, m.as_str())?;
        }
    }
    Ok(table)
}

/// `replacen` with KumoMTA's convention: a limit of 0 replaces every match.
fn replace(re: &Regex, text: &str, limit: usize, replacement: &str) -> mlua::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (n, caps) in re.captures_iter(text).enumerate() {
        if limit != 0 && n >= limit {
            break;
        }
        let caps = caps.map_err(error)?;
        let whole = caps.get(0).expect("group 0 is the match");
        out.push_str(&text[last..whole.start()]);
        caps.expand(replacement, &mut out);
        last = whole.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

impl UserData for LuaRegex {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("captures", |lua, re, haystack: String| match re.0.captures(&haystack).map_err(error)? {
            Some(caps) => Ok(Value::Table(captures_table(lua, &re.0, &caps)?)),
            None => Ok(Value::Nil),
        });
        methods.add_method("is_match", |_, re, haystack: String| re.0.is_match(&haystack).map_err(error));
        methods.add_method("find", |_, re, haystack: String| {
            Ok(re.0.find(&haystack).map_err(error)?.map(|m| m.as_str().to_string()))
        });
        methods.add_method("find_all", |_, re, haystack: String| {
            re.0.find_iter(&haystack)
                .map(|m| m.map(|m| m.as_str().to_string()).map_err(error))
                .collect::<Result<Vec<_>, _>>()
        });
        methods.add_method("replace", |_, re, (text, with): (String, String)| replace(&re.0, &text, 1, &with));
        methods.add_method("replace_all", |_, re, (text, with): (String, String)| replace(&re.0, &text, 0, &with));
        methods.add_method("replacen", |_, re, (text, limit, with): (String, usize, String)| {
            replace(&re.0, &text, limit, &with)
        });
        methods.add_method("split", |_, re, text: String| {
            re.0.split(&text).map(|part| part.map(str::to_string).map_err(error)).collect::<Result<Vec<_>, _>>()
        });
    }
}

/// Add `kumo.regex` and make `require 'kumo.regex'` find it.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let module = lua.create_table()?;
    module
        .set("compile", lua.create_function(|_, pattern: String| Regex::new(&pattern).map(LuaRegex).map_err(error))?)?;
    module.set("escape", lua.create_function(|_, text: String| Ok(fancy_regex::escape(&text).into_owned()))?)?;
    kumo.set("regex", module)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_examples_hold() {
        crate::run_with(super::install, r#"
            local re = kumo.regex.compile "'(?<title>[^']+)'\\s+\\((?<year>\\d{4})\\)"
            local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
            assert(cap[0] == "'Citizen Kane' (1941)" and cap[1] == 'Citizen Kane')
            assert(cap.title == 'Citizen Kane' and cap.year == '1941')
            assert(kumo.regex.compile('oo'):is_match('foo'))
            assert(kumo.regex.compile('o+'):find('fooood') == 'oooo')
            local words = kumo.regex.compile('\\b\\w{13}\\b'):find_all('Retroactively relinquishing remunerations is reprehensible.')
            assert(#words == 4 and words[4] == 'reprehensible')
            assert(kumo.regex.compile('[^01]+'):replace('1078910', '') == '1010')
            local swap = kumo.regex.compile('(?P<last>[^,\\s]+),\\s+(?P<first>\\S+)')
            assert(swap:replace('Springsteen, Bruce', '$first $last') == 'Bruce Springsteen')
            assert(kumo.regex.compile('a'):replacen('aaaa', 2, 'b') == 'bbaa')
            assert(kumo.regex.compile('a'):replace_all('aaaa', 'b') == 'bbbb')
            local parts = kumo.regex.compile('[ \\t]+'):split('a b \t  c\td    e')
            assert(#parts == 5 and parts[5] == 'e')
            assert(kumo.regex.escape('a.b') == 'a\\.b')
            assert(kumo.regex.compile('(?<=x)y'):is_match('xy'))
            "#).unwrap();
    }
}

/// `kumo.regex_set_map.new{ [pattern] = value }`: `map[text]` is the value
/// of a pattern matching `text` (the first in pattern order when several
/// match), or nil. Built once; it cannot be changed afterwards.
struct RegexSetMap {
    set: regex::RegexSet,
    values: Vec<Value>,
}

impl UserData for RegexSetMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::Index, |_, map, text: String| {
            Ok(map.set.matches(&text).iter().next().map_or(Value::Nil, |i| map.values[i].clone()))
        });
        methods.add_meta_method(mlua::MetaMethod::NewIndex, |_, _, (_, _): (Value, Value)| {
            Err::<(), _>(mlua::Error::runtime("a regex_set_map cannot be changed once built"))
        });
    }
}

fn regex_set_map(_: &Lua, seed: Option<Table>) -> mlua::Result<RegexSetMap> {
    let mut entries: Vec<(String, Value)> = Vec::new();
    if let Some(seed) = seed {
        for pair in seed.pairs::<String, Value>() {
            entries.push(pair?);
        }
    }
    // Lua tables have no order: sort the patterns so "first" is stable.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let set = regex::RegexSet::new(entries.iter().map(|(p, _)| p.as_str()))
        .map_err(|e| mlua::Error::runtime(format!("kumo.regex_set_map.new: {e}")))?;
    Ok(RegexSetMap { set, values: entries.into_iter().map(|(_, v)| v).collect() })
}

/// Add `kumo.regex_set_map`.
pub(crate) fn install_set_map(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let module = lua.create_table()?;
    module.set("new", lua.create_function(regex_set_map)?)?;
    kumo.set("regex_set_map", module)
}

#[cfg(test)]
mod set_map_tests {
    #[test]
    fn the_documented_example_holds() {
        crate::run_with(
            super::install_set_map,
            r#"
            local map = kumo.regex_set_map.new { hello = 'hello', bye = 'bye', later = 'bye', ['Good day'] = 'hello' }
            assert(map['hello there'] == 'hello')
            assert(map['goodbye'] == 'bye')
            assert(map['see you later'] == 'bye')
            assert(map['not.set'] == nil)
            assert(not pcall(function() map.x = 1 end))
            assert(not pcall(kumo.regex_set_map.new, { ['('] = 1 }))
            "#,
        )
        .unwrap();
    }
}
