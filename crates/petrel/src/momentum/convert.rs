//! From a parsed Momentum configuration to a Petrel policy: bindings become
//! sources (in `sources.toml`, read by `policy-extras.sources`), binding
//! groups and `Match_Domain` become pools, global and `Domain` scopes
//! become queue and path settings and routes in `init.lua`. Every option
//! outside the mapped subset is reported with its line, never dropped.

use super::parse::Scope;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where the generated policy keeps things.
pub struct Targets {
    /// The ESMTP listener address.
    pub listen: String,
    /// The spool directory.
    pub spool: String,
    /// The log directory.
    pub logs: String,
    /// The path `init.lua` loads `sources.toml` from.
    pub sources_path: String,
    /// The configuration file's name, for the header comment.
    pub origin: String,
}

/// The generated files and what could not be carried over.
pub struct Imported {
    /// The policy.
    pub init_lua: String,
    /// The sources and pools.
    pub sources_toml: String,
    /// One line per option or scope with no Petrel equivalent.
    pub unmapped: Vec<String>,
}

/// Options that belong to a binding (and so to its group and the global
/// scope, from which bindings inherit).
const BINDING_OPTIONS: [&str; 15] = [
    "bind_address",
    "ehlo_timeout",
    "mailfrom_timeout",
    "rcptto_timeout",
    "body_timeout",
    "max_deliveries_per_connection",
    "ehlo_hostname",
    "max_outbound_connections",
    "max_recipients_per_batch",
    "idle_timeout",
    "connect_timeout",
    "tls",
    "tls_verify",
    "remote_smtp_port",
    "suspend_delivery",
];

/// Options of `Domain` scopes (and the global scope).
const DOMAIN_OPTIONS: [&str; 21] = [
    "gateway",
    "generate_bounces",
    "generate_delay_dsn",
    "delay_dsn_retry_interval",
    "ehlo_timeout",
    "mailfrom_timeout",
    "rcptto_timeout",
    "body_timeout",
    "max_deliveries_per_connection",
    "delivery_method",
    "remote_smtp_port",
    "lmtp_port",
    "max_recipients_per_batch",
    "retry_interval",
    "max_retry_interval",
    "message_expiration",
    "idle_timeout",
    "connect_timeout",
    "max_outbound_connections",
    "tls",
    "tls_verify",
];

/// A Lua string literal.
fn lua_str(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A Lua table of `key = value` fields from already-rendered values.
fn lua_table(fields: &BTreeMap<String, String>) -> String {
    if fields.is_empty() {
        return "{}".into();
    }
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", inner.join(", "))
}

struct Converter<'a> {
    unmapped: Vec<String>,
    root: &'a Scope,
}

impl Converter<'_> {
    fn note(&mut self, line: usize, text: String) {
        self.unmapped.push(format!("line {line}: {text}"));
    }

    fn seconds(&mut self, scope_line: usize, option: &str, value: &str) -> Option<String> {
        match value.trim().parse::<u64>() {
            Ok(n) => Some(n.to_string()),
            Err(_) => {
                self.note(scope_line, format!("{option} = {value}: not a number of seconds; not carried over"));
                None
            }
        }
    }

    fn number(&mut self, line: usize, option: &str, value: &str) -> Option<String> {
        match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(n.to_string()),
            _ => {
                self.note(line, format!("{option} = {value}: not a positive number; not carried over"));
                None
            }
        }
    }

    /// Momentum's `TLS` (`no`, `ifavailable`, `required`) with `TLS_Verify`.
    fn tls(&mut self, line: usize, tls: &str, verify: Option<&str>) -> Option<String> {
        let verified = verify.is_some_and(|v| !v.eq_ignore_ascii_case("no"));
        let mode = match (tls.to_ascii_lowercase().as_str(), verified) {
            ("no", _) => "Disabled",
            // Momentum falls back to clear text after a failed handshake
            // (tls_ifavailable_fallback, on by default), as this mode does.
            ("ifavailable", verified) => {
                if verified {
                    self.note(
                        line,
                        "TLS_Verify with TLS = ifavailable: Petrel does not verify opportunistic TLS".into(),
                    );
                }
                "OpportunisticInsecure"
            }
            ("required", false) => "RequiredInsecure",
            ("required", true) => "Required",
            _ => {
                self.note(line, format!("TLS = {tls}: not one of no, ifavailable, required; not carried over"));
                return None;
            }
        };
        Some(lua_str(mode))
    }

    /// The egress path settings among `options` (already merged in scope order).
    fn path_settings(&mut self, options: &BTreeMap<String, (String, usize)>) -> BTreeMap<String, String> {
        let mut path = BTreeMap::new();
        for (option, (value, line)) in options {
            let (line, value) = (*line, value.as_str());
            let setting = match option.as_str() {
                "max_outbound_connections" => self.number(line, option, value).map(|v| ("connection_limit", v)),
                "max_recipients_per_batch" => self.number(line, option, value).map(|v| ("max_recipients_per_batch", v)),
                "idle_timeout" => self.seconds(line, option, value).map(|v| ("idle_timeout", v)),
                "connect_timeout" => self.seconds(line, option, value).map(|v| ("connect_timeout", v)),
                "ehlo_timeout" => self.seconds(line, option, value).map(|v| ("ehlo_timeout", v)),
                "mailfrom_timeout" => self.seconds(line, option, value).map(|v| ("mail_from_timeout", v)),
                "rcptto_timeout" => self.seconds(line, option, value).map(|v| ("rcpt_to_timeout", v)),
                "body_timeout" => self.seconds(line, option, value).map(|v| ("data_dot_timeout", v)),
                // Momentum's 0 is "no limit"; Petrel's default (1024) stands.
                "max_deliveries_per_connection" if value.trim() == "0" => None,
                "max_deliveries_per_connection" => {
                    self.number(line, option, value).map(|v| ("max_deliveries_per_connection", v))
                }
                "tls" => {
                    let verify = options.get("tls_verify").map(|(v, _)| v.as_str());
                    self.tls(line, value, verify).map(|v| ("enable_tls", v))
                }
                _ => None,
            };
            if let Some((key, value)) = setting {
                path.insert(key.to_string(), value);
            }
        }
        path
    }

    fn queue_settings(&mut self, options: &BTreeMap<String, (String, usize)>) -> BTreeMap<String, String> {
        let mut queue = BTreeMap::new();
        for (option, key) in [
            ("retry_interval", "retry_interval"),
            ("max_retry_interval", "max_retry_interval"),
            ("message_expiration", "max_age"),
            ("delay_dsn_retry_interval", "delay_dsn_retry_interval"),
        ] {
            if let Some((value, line)) = options.get(option)
                && let Some(v) = self.seconds(*line, option, value)
            {
                queue.insert(key.to_string(), v);
            }
        }
        for option in ["generate_bounces", "generate_delay_dsn"] {
            if let Some((value, line)) = options.get(option) {
                match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" => queue.insert(option.to_string(), "true".into()),
                    "false" | "no" | "0" => queue.insert(option.to_string(), "false".into()),
                    _ => {
                        self.note(*line, format!("{option} = {value}: not true or false; not carried over"));
                        None
                    }
                };
            }
        }
        queue
    }

    /// Routing of a global or Domain scope: `Gateway` as the routing domain
    /// (an address becomes a domain literal), LMTP and ports as path settings.
    fn routing(&mut self, options: &BTreeMap<String, (String, usize)>) -> (Option<String>, BTreeMap<String, String>) {
        let mut path = BTreeMap::new();
        let gateway = options.get("gateway").map(|(g, _)| match g.parse::<std::net::IpAddr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => g.clone(),
        });
        let lmtp = options.get("delivery_method").map(|(m, line)| (m.to_ascii_uppercase(), *line));
        match lmtp.as_ref().map(|(m, l)| (m.as_str(), *l)) {
            Some(("LMTP", _)) => {
                path.insert("use_lmtp".into(), "true".into());
                let port = options.get("lmtp_port").map_or("2003".to_string(), |(p, _)| p.clone());
                path.insert("smtp_port".into(), port);
            }
            Some(("ESMTP" | "SMTP", _)) | None => {
                if let Some((port, line)) = options.get("remote_smtp_port")
                    && let Some(port) = self.number(*line, "remote_smtp_port", port)
                {
                    path.insert("smtp_port".into(), port);
                }
            }
            Some((other, line)) => {
                self.note(line, format!("Delivery_Method = {other}: only ESMTP, SMTP and LMTP are carried over"));
            }
        }
        (gateway, path)
    }
}

/// `options` of `scope` that are in `wanted`, over `inherited`; the rest
/// are reported (scopes inside are handled by the caller).
fn layer(
    c: &mut Converter<'_>,
    scope: &Scope,
    wanted: &[&str],
    inherited: &BTreeMap<String, (String, usize)>,
    extra_ok: &[&str],
) -> BTreeMap<String, (String, usize)> {
    let mut out = inherited.clone();
    let label = match &scope.name {
        Some(name) => format!("{} {name:?}", scope.kind),
        None => scope.kind.clone(),
    };
    for (option, value, line) in &scope.options {
        if wanted.contains(&option.as_str()) {
            out.insert(option.clone(), (value.clone(), *line));
        } else if !extra_ok.contains(&option.as_str()) {
            c.note(*line, format!("{option} in {label}: no Petrel equivalent yet; not carried over"));
        }
    }
    out
}

struct Binding {
    name: String,
    group: Option<String>,
    match_domain: Option<String>,
    options: BTreeMap<String, (String, usize)>,
    line: usize,
}

fn collect_bindings(c: &mut Converter<'_>, global: &BTreeMap<String, (String, usize)>) -> Vec<Binding> {
    let mut out = Vec::new();
    let root = c.root;
    for child in &root.children {
        match child.kind.as_str() {
            "binding" => out.push(binding(c, child, None, global)),
            "binding_group" => {
                let group_options = layer(c, child, &BINDING_OPTIONS, global, &[]);
                for inner in &child.children {
                    if inner.kind == "binding" {
                        out.push(binding(c, inner, child.name.clone(), &group_options));
                    } else {
                        c.note(inner.line, format!("{} scope inside binding_group: not carried over", inner.kind));
                    }
                }
            }
            "domain" => {}
            other => c.note(child.line, format!("{other} scope: no Petrel equivalent yet; not carried over")),
        }
    }
    out
}

fn binding(
    c: &mut Converter<'_>,
    scope: &Scope,
    group: Option<String>,
    inherited: &BTreeMap<String, (String, usize)>,
) -> Binding {
    let options = layer(c, scope, &BINDING_OPTIONS, inherited, &["match_domain", "binding_group"]);
    for inner in &scope.children {
        c.note(inner.line, format!("{} scope inside binding: not carried over", inner.kind));
    }
    // Before Momentum 3.0 a binding could name its group inside itself.
    let group = group.or_else(|| scope.get("binding_group").map(str::to_string));
    Binding {
        name: scope.name.clone().unwrap_or_default(),
        group,
        match_domain: scope.get("match_domain").map(|d| d.to_ascii_lowercase()),
        options,
        line: scope.line,
    }
}

fn sources_toml(
    c: &mut Converter<'_>,
    bindings: &[Binding],
) -> (toml::Table, BTreeMap<String, String>, Option<String>) {
    let mut sources = toml::Table::new();
    let mut pools: BTreeMap<String, toml::Table> = BTreeMap::new();
    let mut matches = BTreeMap::new();
    for b in bindings {
        let mut source = toml::Table::new();
        if let Some((address, _)) = b.options.get("bind_address") {
            source.insert("source_address".into(), address.clone().into());
        }
        match b.options.get("ehlo_hostname").map(|(e, l)| (e.as_str(), *l)) {
            Some(("__hostname__", _)) | None => {}
            Some(("__message__", line)) => c.note(line, format!("EHLO_Hostname = __message__ in binding {:?}: not carried over (the source uses the machine's name)", b.name)),
            Some((name, _)) => {
                source.insert("ehlo_domain".into(), name.into());
            }
        }
        if let Some((port, _)) = b.options.get("remote_smtp_port")
            && let Ok(port) = port.parse::<u16>()
        {
            source.insert("remote_port".into(), i64::from(port).into());
        }
        if let Some((value, line)) = b.options.get("suspend_delivery")
            && value.eq_ignore_ascii_case("true")
        {
            c.note(
                *line,
                format!(
                    "Suspend_Delivery = true in binding {:?}: after starting, run `petrel suspend-source {}`",
                    b.name, b.name
                ),
            );
        }
        sources.insert(b.name.clone(), toml::Value::Table(source));
        let pool = match (&b.match_domain, &b.group) {
            (Some(domain), _) => {
                matches.insert(domain.clone(), b.name.clone());
                Some(b.name.clone())
            }
            (None, Some(group)) => Some(group.clone()),
            (None, None) if b.name == "default" => None,
            (None, None) => {
                c.note(b.line, format!("binding {:?} has no Match_Domain and no group: a pool of its own name is made, but nothing assigns mail to it", b.name));
                Some(b.name.clone())
            }
        };
        if let Some(pool) = pool {
            pools.entry(pool).or_default().insert(b.name.clone(), toml::Value::Table(toml::Table::new()));
        }
        // A binding with Match_Domain inside a group is also a member of it.
        if let (Some(_), Some(group)) = (&b.match_domain, &b.group) {
            pools.entry(group.clone()).or_default().insert(b.name.clone(), toml::Value::Table(toml::Table::new()));
        }
    }
    let default_pool = pools.contains_key("default").then(|| "default".to_string());
    let mut table = toml::Table::new();
    table.insert("source".into(), toml::Value::Table(sources));
    table.insert(
        "pool".into(),
        toml::Value::Table(pools.into_iter().map(|(k, v)| (k, toml::Value::Table(v))).collect()),
    );
    (table, matches, default_pool)
}

/// Convert the global scope `root` of a Momentum configuration.
pub fn convert(root: &Scope, targets: &Targets) -> Imported {
    let mut c = Converter { unmapped: Vec::new(), root };
    let mut all_global: Vec<&str> = BINDING_OPTIONS.to_vec();
    all_global.extend(DOMAIN_OPTIONS);
    let global = layer(&mut c, root, &all_global, &BTreeMap::new(), &[]);
    // A global Remote_SMTP_Port is the port of every route (a path
    // setting); set on a binding it overrides the port for that binding
    // alone (the source's remote_port), so only the latter is inherited.
    let binding_inherited: BTreeMap<_, _> = global
        .iter()
        .filter(|(k, _)| BINDING_OPTIONS.contains(&k.as_str()) && k.as_str() != "remote_smtp_port")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let bindings = collect_bindings(&mut c, &binding_inherited);
    let (sources, matches, default_pool) = sources_toml(&mut c, &bindings);

    let (global_route, global_route_path) = c.routing(&global);
    let global_queue = c.queue_settings(&global);
    let mut global_path = c.path_settings(&global);
    global_path.extend(global_route_path);
    let mut domains = Vec::new();
    let mut by_route: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for scope in root.children.iter().filter(|s| s.kind == "domain") {
        let Some(name) = scope.name.clone() else {
            c.note(scope.line, "Domain scope without a name: not carried over".into());
            continue;
        };
        let options = layer(&mut c, scope, &DOMAIN_OPTIONS, &BTreeMap::new(), &["suspend_delivery"]);
        if scope.get("suspend_delivery").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            c.note(
                scope.line,
                format!(
                    "Suspend_Delivery = true in Domain {name}: after starting, run `petrel suspend --domain {name}`"
                ),
            );
        }
        let (route, route_path) = c.routing(&options);
        let mut path = c.path_settings(&options);
        path.extend(route_path);
        let queue = c.queue_settings(&options);
        let key = route.clone().or_else(|| global_route.clone()).unwrap_or_else(|| name.to_ascii_lowercase());
        if !path.is_empty() && by_route.insert(key.clone(), path).is_some() {
            c.note(scope.line, format!("Domain {name} shares the route {key} with another Domain scope; the last one's delivery settings apply to both"));
        }
        domains.push((name.to_ascii_lowercase(), route, queue));
    }
    let by_source: BTreeMap<String, BTreeMap<String, String>> = bindings
        .iter()
        .map(|b| {
            // Only what the binding or its group set: the global scope's
            // settings are already in GLOBAL.path.
            let own: BTreeMap<_, _> = b
                .options
                .iter()
                .filter(|(k, v)| binding_inherited.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (b.name.clone(), c.path_settings(&own))
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();

    let init_lua = render(
        targets,
        &matches,
        default_pool.as_deref(),
        (&global_route, &global_queue, &global_path),
        &domains,
        &by_route,
        &by_source,
        &c.unmapped,
    );
    let sources_toml = format!(
        "# Generated by `petrel import-momentum` from {}: one source per Binding,\n# one pool per binding_group and per binding with Match_Domain.\n\n{}",
        targets.origin,
        toml::to_string_pretty(&sources).unwrap_or_default()
    );
    Imported { init_lua, sources_toml, unmapped: c.unmapped }
}

type Settings = BTreeMap<String, String>;

#[allow(clippy::too_many_arguments)]
fn render(
    t: &Targets,
    matches: &BTreeMap<String, String>,
    default_pool: Option<&str>,
    global: (&Option<String>, &Settings, &Settings),
    domains: &[(String, Option<String>, Settings)],
    by_route: &BTreeMap<String, Settings>,
    by_source: &BTreeMap<String, Settings>,
    unmapped: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "-- Generated by `petrel import-momentum` from {}.", t.origin);
    let _ = writeln!(out, "-- What could not be carried over is listed at the end of this file.");
    let _ = writeln!(out, "local kumo = require 'kumo'\nlocal utils = require 'policy-extras.policy_utils'");
    let _ = writeln!(
        out,
        "local sources = require 'policy-extras.sources'\nsources:setup {{ {} }}\n",
        lua_str(&t.sources_path)
    );
    let _ = writeln!(out, "-- Match_Domain: the envelope sender's domain picks a binding.\nlocal MATCH_DOMAIN = {{");
    for (domain, pool) in matches {
        let _ = writeln!(out, "  [{}] = {},", lua_str(domain), lua_str(pool));
    }
    let _ = writeln!(out, "}}");
    let default_pool = default_pool.map_or("nil".to_string(), lua_str);
    let _ = writeln!(
        out,
        "-- The pool of mail no Match_Domain claims (the \"default\" binding_group).\nlocal DEFAULT_POOL = {default_pool}\n"
    );
    let (route, queue, path) = global;
    let route = route.as_deref().map_or("nil".to_string(), lua_str);
    let _ = writeln!(out, "-- The global scope: Gateway, queue and delivery settings.");
    let _ = writeln!(
        out,
        "local GLOBAL = {{ routing_domain = {route}, queue = {}, path = {} }}",
        lua_table(queue),
        lua_table(path)
    );
    let _ = writeln!(out, "-- Domain scopes by recipient domain.\nlocal DOMAINS = {{");
    for (name, route, queue) in domains {
        let route = route.as_deref().map_or("nil".to_string(), lua_str);
        let _ = writeln!(out, "  [{}] = {{ routing_domain = {route}, queue = {} }},", lua_str(name), lua_table(queue));
    }
    let _ = writeln!(
        out,
        "}}\n-- Delivery settings of Domain scopes, by the route their mail takes.\nlocal PATHS_BY_ROUTE = {{"
    );
    for (route, path) in by_route {
        let _ = writeln!(out, "  [{}] = {},", lua_str(route), lua_table(path));
    }
    let _ = writeln!(
        out,
        "}}\n-- Delivery settings of bindings and binding_groups, by source.\nlocal PATHS_BY_SOURCE = {{"
    );
    for (source, path) in by_source {
        let _ = writeln!(out, "  [{}] = {},", lua_str(source), lua_table(path));
    }
    let _ = writeln!(out, "}}\n");
    let _ = write!(
        out,
        r#"kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = {spool} }}
  kumo.configure_local_logs {{ log_dir = {logs} }}
  kumo.start_esmtp_listener {{ listen = {listen}, relay_hosts = {{ '127.0.0.1', '::1' }} }}
end)

local function assign(msg)
  local pool = MATCH_DOMAIN[msg:sender().domain] or DEFAULT_POOL
  if pool then
    msg:set_meta('egress_pool', pool)
  end
  local domain = DOMAINS[msg:recipient().domain]
  local route = (domain and domain.routing_domain) or GLOBAL.routing_domain
  if route then
    msg:set_meta('routing_domain', route)
  end
end
kumo.on('smtp_server_message_received', assign)
kumo.on('http_message_generated', assign)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local scope = DOMAINS[domain] or {{}}
  return kumo.make_queue_config(utils.merge(GLOBAL.queue, scope.queue))
end)

-- Most specific last: global, then the Domain's route, then the binding.
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path(
    utils.merge(GLOBAL.path, PATHS_BY_ROUTE[routing_domain], PATHS_BY_SOURCE[egress_source])
  )
end)
"#,
        spool = lua_str(&t.spool),
        logs = lua_str(&t.logs),
        listen = lua_str(&t.listen),
    );
    if !unmapped.is_empty() {
        let _ = writeln!(out, "\n-- Not carried over (see docs/migrating-from-momentum.md):");
        for line in unmapped {
            let _ = writeln!(out, "--   {line}");
        }
    }
    out
}
