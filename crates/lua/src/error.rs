//! Turning Lua errors into messages that point at the policy line to fix.

use std::fmt;

/// Everything wrong with a policy, each entry starting with `file:line:`
/// where the policy allows it to be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLoadError {
    /// One line per problem.
    pub errors: Vec<String>,
}

impl PolicyLoadError {
    /// An error with a single problem.
    pub fn one(message: impl Into<String>) -> Self {
        Self { errors: vec![message.into()] }
    }
}

impl fmt::Display for PolicyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.errors.join("\n"))
    }
}

impl std::error::Error for PolicyLoadError {}

/// The message of the innermost error, which is the one the policy author
/// wrote or caused, prefixed with the policy location from the traceback
/// when the message does not already carry one.
pub fn describe(err: &mlua::Error) -> String {
    let mut root = err;
    let mut traceback = None;
    while let Some(parent) = root.parent() {
        if let mlua::Error::CallbackError { traceback: t, .. } = root {
            traceback.get_or_insert(t.as_str());
        }
        root = parent;
    }
    let message = match root {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::ExternalError(e) => e.to_string(),
        other => other.to_string(),
    };
    let message = message.lines().next().unwrap_or_default().to_string();
    match traceback.and_then(first_lua_frame) {
        Some(location) if !message.starts_with(&location) && !has_location(&message) => {
            format!("{location}: {message}")
        }
        _ => message,
    }
}

/// `file.lua:12` from a Lua traceback's first frame that is not a C function.
fn first_lua_frame(traceback: &str) -> Option<String> {
    traceback.lines().skip(1).map(str::trim).find(|l| !l.starts_with("[C]")).and_then(|l| {
        let mut parts = l.splitn(3, ':');
        let (file, line) = (parts.next()?, parts.next()?);
        line.parse::<u32>().ok().map(|n| format!("{file}:{n}"))
    })
}

/// Whether a message already starts with `something:NUMBER:`.
fn has_location(message: &str) -> bool {
    let mut parts = message.splitn(3, ':');
    matches!((parts.next(), parts.next(), parts.next()), (Some(_), Some(n), Some(_)) if n.parse::<u32>().is_ok())
}

/// `file:line` of the Lua code calling the current Rust function.
pub fn caller_location(lua: &mlua::Lua) -> String {
    lua.inspect_stack(1, |d| {
        let source = d.source();
        let file = source.short_src.as_deref().unwrap_or("?").to_string();
        match d.current_line() {
            Some(line) => format!("{file}:{line}"),
            None => file,
        }
    })
    .unwrap_or_else(|| "?".into())
}
