//! Momentum's `ecelerity.conf` syntax: `Option = value` lines and named
//! scopes (`Binding "name" { ... }`, `Domain example.com { ... }`), with
//! `#` comments. Option and scope names are case-insensitive; values keep
//! their case. Lists in parentheses are kept as one value.

use std::fmt;

/// A scope and what it holds; the file itself is the `global` scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The scope keyword, lower-cased (`binding`, `binding_group`, `domain`).
    pub kind: String,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// `(option lower-cased, value, line)` in file order.
    pub options: Vec<(String, String, usize)>,
    /// Scopes inside it, in file order.
    pub children: Vec<Scope>,
    /// The line it starts on.
    pub line: usize,
}

impl Scope {
    /// The last value given for `option` in this scope itself.
    pub fn get(&self, option: &str) -> Option<&str> {
        self.options.iter().rev().find(|(k, ..)| k == option).map(|(_, v, _)| v.as_str())
    }
}

/// A syntax error with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    Equals,
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let mut tokens = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let mut chars = raw.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' => break,
                c if c.is_whitespace() => {
                    chars.next();
                }
                '{' | '}' | '=' => {
                    chars.next();
                    tokens.push((
                        match c {
                            '{' => Token::Open,
                            '}' => Token::Close,
                            _ => Token::Equals,
                        },
                        line,
                    ));
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => word.extend(chars.next()),
                            Some(c) => word.push(c),
                            None => return Err(ParseError { line, message: "unterminated quoted string".into() }),
                        }
                    }
                    tokens.push((Token::Word(word), line));
                }
                '(' => {
                    let mut list = String::new();
                    for c in chars.by_ref() {
                        list.push(c);
                        if c == ')' {
                            break;
                        }
                    }
                    tokens.push((Token::Word(list), line));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '{' | '}' | '=' | '#' | '"') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push((Token::Word(word), line));
                }
            }
        }
    }
    Ok(tokens)
}

/// Parse a whole file into its global scope.
pub fn parse(text: &str) -> Result<Scope, ParseError> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    let root = parse_body(&tokens, &mut pos, Scope { kind: "global".into(), line: 1, ..Default::default() })?;
    if let Some((_, line)) = tokens.get(pos) {
        return Err(ParseError { line: *line, message: "unexpected '}'".into() });
    }
    Ok(root)
}

fn parse_body(tokens: &[(Token, usize)], pos: &mut usize, mut scope: Scope) -> Result<Scope, ParseError> {
    while let Some((token, line)) = tokens.get(*pos) {
        let line = *line;
        let key = match token {
            Token::Close => return Ok(scope),
            Token::Word(w) => w.to_ascii_lowercase(),
            Token::Open | Token::Equals => {
                return Err(ParseError { line, message: "expected an option or scope name".into() });
            }
        };
        *pos += 1;
        match tokens.get(*pos) {
            Some((Token::Equals, _)) => {
                *pos += 1;
                // The value is the rest of the line, up to a closing brace.
                let mut words = Vec::new();
                while let Some((Token::Word(w), l)) = tokens.get(*pos) {
                    if *l != line {
                        break;
                    }
                    words.push(w.clone());
                    *pos += 1;
                }
                if words.is_empty() {
                    return Err(ParseError { line, message: format!("{key} has no value") });
                }
                scope.options.push((key, words.join(" "), line));
            }
            Some((Token::Open, _)) => {
                *pos += 1;
                let child = parse_body(tokens, pos, Scope { kind: key, line, ..Default::default() })?;
                close(tokens, pos, line)?;
                scope.children.push(child);
            }
            Some((Token::Word(name), _)) if matches!(tokens.get(*pos + 1), Some((Token::Open, _))) => {
                let name = name.clone();
                *pos += 2;
                let child = parse_body(tokens, pos, Scope { kind: key, name: Some(name), line, ..Default::default() })?;
                close(tokens, pos, line)?;
                scope.children.push(child);
            }
            _ => return Err(ParseError { line, message: format!("expected '=' or '{{' after {key}") }),
        }
    }
    if scope.kind == "global" {
        Ok(scope)
    } else {
        Err(ParseError { line: scope.line, message: format!("{} scope is not closed", scope.kind) })
    }
}

fn close(tokens: &[(Token, usize)], pos: &mut usize, opened: usize) -> Result<(), ParseError> {
    match tokens.get(*pos) {
        Some((Token::Close, _)) => {
            *pos += 1;
            Ok(())
        }
        _ => Err(ParseError { line: opened, message: "scope is not closed".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_options_and_comments() {
        let conf = r#"
# route all mail to a "smart host"
Gateway = 10.10.10.50
binding_group "group1" {
  max_outbound_connections = 5
  binding "example" { bind_address = "10.10.10.10" }
}
Domain local.example.com {
  Gateway = 10.10.10.20   # trailing comment
  Delivery_Method = LMTP
}
"#;
        let root = parse(conf).unwrap();
        assert_eq!(root.get("gateway"), Some("10.10.10.50"));
        let group = &root.children[0];
        assert_eq!((group.kind.as_str(), group.name.as_deref()), ("binding_group", Some("group1")));
        assert_eq!(group.get("max_outbound_connections"), Some("5"));
        assert_eq!(group.children[0].get("bind_address"), Some("10.10.10.10"));
        let domain = &root.children[1];
        assert_eq!(domain.name.as_deref(), Some("local.example.com"));
        assert_eq!(domain.get("delivery_method"), Some("LMTP"));
        assert_eq!(domain.line, 8);
    }

    #[test]
    fn errors_name_their_line() {
        assert_eq!(parse("Binding x {\n bind_address = 1.2.3.4\n").unwrap_err().line, 1);
        assert_eq!(parse("a = 1\n}\n").unwrap_err().line, 2);
        assert_eq!(parse("Gateway =\n").unwrap_err().line, 1);
        assert!(parse("x = \"open\n").unwrap_err().message.contains("unterminated"));
    }
}
