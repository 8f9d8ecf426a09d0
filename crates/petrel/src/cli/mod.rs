//! The `petrel` command line: `serve` runs the daemon, `validate` checks a
//! policy, `logs tail` reads log segments, and the rest drive a running
//! daemon through its HTTP API (`--endpoint`), printing tables or `--json`.

mod client;
mod logs;
mod messages;
mod serve;
mod show;
mod spool;
mod top;
mod trace;
mod validate;

use crate::system_hostname;
use clap::{Args, Parser, Subcommand};
use client::Api;
use comfy_table::Table;
use petrel_lua::{InitConfig, PolicyEngine};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "petrel", version, about = "A mail transfer agent for high-volume senders, scripted in Lua")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the daemon's HTTP API is, and how to print answers.
#[derive(Args, Clone)]
struct Remote {
    /// The daemon's HTTP listener.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    endpoint: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Which scheduled queues: by name, or by the parts of their names.
#[derive(Args, Clone, Default)]
struct Selector {
    /// A scheduled queue by its full name (`campaign:tenant@domain`).
    #[arg(long)]
    queue: Option<String>,
    /// Every queue for this recipient domain.
    #[arg(long)]
    domain: Option<String>,
    /// Every queue of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Every queue of this campaign.
    #[arg(long)]
    campaign: Option<String>,
}

/// Why and for how long a suspension holds.
#[derive(clap::Args, Debug)]
struct Hold {
    /// Why (shown by `petrel suspensions`).
    #[arg(long)]
    reason: Option<String>,
    /// How long (`2h`, `30min`); until lifted when not given.
    #[arg(long)]
    duration: Option<String>,
}

impl Hold {
    fn add_to(&self, mut body: Value) -> Value {
        if let Some(reason) = &self.reason {
            body["reason"] = json!(reason);
        }
        if let Some(duration) = &self.duration {
            body["duration"] = json!(duration);
        }
        body
    }
}

impl Selector {
    fn json(&self) -> Value {
        json!({ "queue": self.queue, "domain": self.domain, "tenant": self.tenant, "campaign": self.campaign })
    }
}

/// How the policy's Lua runs.
#[derive(Args, Clone, Copy)]
struct LuaArgs {
    /// Give the policy Lua's whole standard library: io, os.execute,
    /// load, C modules. By default a policy can neither run programs nor
    /// open files except through kumo helpers.
    #[arg(long)]
    unrestricted_lua: bool,
    /// Most memory one Lua state may use, in MiB; an event that needs more
    /// fails (the client is told to retry) and its state is discarded.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    lua_memory_limit: usize,
    /// Longest one policy event may run or wait, in seconds; past it the
    /// event fails (an SMTP client gets 451 4.3.0).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    lua_time_limit: f64,
}

impl LuaArgs {
    fn settings(self) -> petrel_lua::LuaSettings {
        petrel_lua::LuaSettings {
            unrestricted: self.unrestricted_lua,
            memory_limit: self.lua_memory_limit << 20,
            event_time_limit: std::time::Duration::from_secs_f64(self.lua_time_limit.max(0.001)),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the MTA with a policy.
    Serve {
        /// The policy file.
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
        #[command(flatten)]
        lua: LuaArgs,
        /// Print a status line this often (seconds) while anything happens; 0: never.
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        status_interval: u64,
    },
    /// Load a policy, run its init event, and show the sources, pools and
    /// listeners it defines; exits non-zero on any error.
    Validate {
        /// The policy file.
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
        #[command(flatten)]
        lua: LuaArgs,
        /// A recipient domain to try the config events with (repeatable;
        /// example.com when none is given).
        #[arg(long = "sample-domain", value_name = "DOMAIN")]
        sample_domains: Vec<String>,
    },
    /// Turn a Momentum ecelerity.conf (bindings, binding groups,
    /// Match_Domain, global and Domain scopes) into an init.lua and a
    /// sources.toml; lists every option it cannot carry over.
    ImportMomentum {
        /// The Momentum configuration file.
        config: PathBuf,
        /// Where to write init.lua and sources.toml.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The ESMTP listener of the generated policy.
        #[arg(long, default_value = "0.0.0.0:25")]
        listen: String,
        /// The spool directory of the generated policy (/var/spool/petrel).
        #[arg(long)]
        spool: Option<PathBuf>,
        /// The log directory of the generated policy (/var/log/petrel).
        #[arg(long)]
        logs: Option<PathBuf>,
    },
    /// Scheduled and ready queues of the running daemon.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Hold scheduled queues (by name, or by domain/tenant/campaign);
    /// prints the suspension's id.
    Suspend {
        #[command(flatten)]
        selector: Selector,
        #[command(flatten)]
        hold: Hold,
        #[command(flatten)]
        remote: Remote,
    },
    /// Lift a suspension by `--id`, or those made with the same selector.
    Resume {
        /// The suspension's id (see `petrel suspensions`).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        selector: Selector,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every active suspension, with its reason, creator and expiry.
    Suspensions {
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop sending from an egress source; its pools' other sources take over.
    SuspendSource {
        /// The egress source's name.
        name: String,
        #[command(flatten)]
        hold: Hold,
        #[command(flatten)]
        remote: Remote,
    },
    /// Send from an egress source again.
    ResumeSource {
        /// The egress source's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Bounce messages by spool id, or the waiting messages of matching queues.
    Bounce {
        /// Spool ids (32 hex digits); none: use the queue selector.
        ids: Vec<String>,
        #[command(flatten)]
        selector: Selector,
        /// Why, for the AdminBounce log records.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Move the waiting messages of matching queues to another queue or pool.
    Rebind {
        #[command(flatten)]
        selector: Selector,
        /// The egress pool the messages should leave from.
        #[arg(long, conflicts_with = "to_queue", required_unless_present = "to_queue")]
        to_pool: Option<String>,
        /// The scheduled queue the messages should move to.
        #[arg(long)]
        to_queue: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make waiting messages due now, like `postqueue -f` (every queue
    /// when no selector is given).
    Flush {
        #[command(flatten)]
        selector: Selector,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove messages by spool id without notifying anyone, like `postsuper -d`.
    Delete {
        /// Spool ids (32 hex digits).
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Keep messages but send none of them until released, like `postsuper -h`.
    Hold {
        /// Spool ids (32 hex digits).
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Let held messages go (due now), like `postsuper -H`.
    Release {
        /// Spool ids (32 hex digits).
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Live transcripts of inbound SMTP sessions (those starting from now).
    TraceSmtpServer {
        /// Only clients with this address or in this CIDR block.
        #[arg(long)]
        peer: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Live transcripts of outbound SMTP sessions (those starting from now).
    TraceSmtpClient {
        /// Only servers with this address or in this CIDR block.
        #[arg(long)]
        peer: Option<String>,
        /// Only sites (destination domains or MX names) containing this.
        #[arg(long)]
        site: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// A live view of rates, queues and sources, redrawn in place.
    Top {
        /// Seconds between frames.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one frame and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Reload the policy of the running daemon.
    Reload {
        #[command(flatten)]
        remote: Remote,
    },
    /// Send a test message through the HTTP API.
    Inject {
        /// The envelope sender (and From: header).
        #[arg(long)]
        from: String,
        /// A recipient; repeat for more.
        #[arg(long, required = true)]
        to: Vec<String>,
        /// The Subject: header.
        #[arg(long, default_value = "Test message from petrel")]
        subject: String,
        /// Message text (the body).
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// A complete RFC 5322 message to send instead.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a spooled message.
    Inspect {
        /// The spool id (32 hex digits, as in the logs and the 250 reply).
        id: String,
        /// Include the message text.
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Explain, without sending, the queue, pool, source, path and hosts a
    /// message would take, and why.
    Route {
        /// The envelope sender of the message to route.
        #[arg(long)]
        from: String,
        /// The recipient of the message to route.
        #[arg(long)]
        to: String,
        /// Meta the message would carry (`tenant=acme`), repeatable.
        #[arg(long = "meta", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Read the JSON log records (zstd segments are decompressed).
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Check or salvage a spool offline (stop the daemon first).
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Read everything readable and report damage; changes nothing. Exits
    /// 1 when the spool is damaged.
    Check {
        /// The spool directory (default: the one the policy defines).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The policy file.
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
    },
    /// Copy every readable message into a fresh spool at --into, and write
    /// unusable records and the ids of lost ones to --quarantine. The
    /// damaged spool is left untouched.
    Repair {
        /// The damaged spool directory (default: the one the policy defines).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The policy file.
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
        /// An empty or new directory for the salvaged spool.
        #[arg(long)]
        into: PathBuf,
        /// Where quarantined records go (default: INTO.quarantine).
        #[arg(long)]
        quarantine: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Counts, oldest message, last error and state of every queue.
    Summary,
    /// One line per waiting message, like `mailq`.
    List {
        #[command(flatten)]
        selector: Selector,
        /// At most this many messages (oldest first).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Print the last records, and with --follow keep printing new ones.
    Tail {
        /// The log directory (default: the one the policy configures).
        #[arg(long, visible_alias = "log-dir")]
        dir: Option<PathBuf>,
        /// The policy file.
        #[arg(long, default_value = "policy/init.lua")]
        policy: PathBuf,
        /// How many of the newest records to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing records as they are written.
        #[arg(short, long)]
        follow: bool,
    },
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// Parse the command line, run the command, and say how it ended.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        end_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Serve { policy, lua, status_interval } => {
            return serve::run(policy, lua.settings(), std::time::Duration::from_secs(status_interval));
        }
        Command::Validate { policy, lua, sample_domains } => {
            return validate::run(&policy, lua.settings(), &sample_domains);
        }
        Command::ImportMomentum { config, out, listen, spool, logs } => {
            return crate::momentum::run(&config, &out, &listen, spool.as_deref(), logs.as_deref());
        }
        Command::Logs { command: LogsCommand::Tail { dir, policy, lines, follow } } => {
            tail(dir, &policy, lines, follow)
        }
        Command::Spool { command: SpoolCommand::Check { path, policy } } => {
            return match spool::spool_paths(path, &policy).and_then(|p| spool::check(&p)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("petrel: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Spool { command: SpoolCommand::Repair { path, policy, into, quarantine } } => {
            spool::spool_paths(path, &policy).and_then(|p| spool::repair(&p, into, quarantine))
        }
        other => remote(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command whose output goes into `head` should end quietly when the
/// reader leaves, as Unix tools do, not panic on the write. The daemon
/// keeps SIGPIPE ignored: a closed socket is an error there, not an end.
#[allow(unsafe_code)] // restoring a signal's default disposition via libc
fn end_quietly_on_closed_pipe() {
    // SAFETY: called before any other thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn print(remote: &Remote, value: &Value, human: impl FnOnce(&Value) -> String) {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        print!("{}", human(value));
    }
}

fn affected(what: &str) -> impl FnOnce(&Value) -> String + '_ {
    move |v| match v["affected"].as_u64() {
        Some(n) => format!("{what}: {n} message(s)\n"),
        None => format!("{what}\n"),
    }
}

fn remote(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Queue { command: QueueCommand::Summary, remote } => {
            let v = Api::new(&remote.endpoint).get("/api/admin/queue-summary/v1")?;
            print(&remote, &v, show::queue_summary);
        }
        Command::Suspend { selector, hold, remote } => {
            let v = Api::new(&remote.endpoint).post("/api/admin/suspend/v1", &hold.add_to(selector.json()))?;
            print(&remote, &v, |v| format!("suspended: {}\n", show::text(&v["id"])));
        }
        Command::Resume { id, selector, remote } => {
            let body = match id {
                Some(id) => json!({ "id": id }),
                None => selector.json(),
            };
            let v = Api::new(&remote.endpoint).delete("/api/admin/suspend/v1", &body)?;
            print(&remote, &v, |v| format!("lifted: {} suspension(s)\n", v["affected"].as_u64().unwrap_or(0)));
        }
        Command::Suspensions { remote } => {
            let v = Api::new(&remote.endpoint).get("/api/admin/suspend/v1")?;
            print(&remote, &v, show::suspensions);
        }
        Command::SuspendSource { name, hold, remote } => {
            let body = hold.add_to(json!({ "name": name }));
            let v = Api::new(&remote.endpoint).post("/api/admin/suspend-ready-q/v1", &body)?;
            print(&remote, &v, |v| format!("source suspended: {}\n", show::text(&v["id"])));
        }
        Command::ResumeSource { name, remote } => {
            let v = Api::new(&remote.endpoint).delete("/api/admin/suspend-ready-q/v1", &json!({ "name": name }))?;
            print(&remote, &v, affected("source resumed"));
        }
        Command::Bounce { ids, reason, remote, .. } if !ids.is_empty() => {
            messages::act(&remote, "bounce", &ids, Some(&reason))?;
        }
        Command::Flush { selector, remote } => messages::flush(&remote, selector.json())?,
        Command::TraceSmtpServer { peer, remote } => trace::run(trace::Trace {
            endpoint: &remote.endpoint,
            outbound: false,
            peer: peer.as_deref(),
            site: None,
            json: remote.json,
        })?,
        Command::TraceSmtpClient { peer, site, remote } => trace::run(trace::Trace {
            endpoint: &remote.endpoint,
            outbound: true,
            peer: peer.as_deref(),
            site: site.as_deref(),
            json: remote.json,
        })?,
        Command::Top { interval, once, remote } => {
            top::run(&remote.endpoint, std::time::Duration::from_secs_f64(interval.max(0.1)), once)?;
        }
        Command::Delete { ids, remote } => messages::act(&remote, "delete", &ids, None)?,
        Command::Hold { ids, remote } => messages::act(&remote, "hold", &ids, None)?,
        Command::Release { ids, remote } => messages::act(&remote, "release", &ids, None)?,
        Command::Queue { command: QueueCommand::List { selector, limit }, remote } => {
            messages::list(&remote, &selector.json(), limit)?;
        }
        Command::Bounce { selector, reason, remote, .. } => {
            let mut body = selector.json();
            body["reason"] = json!(reason);
            let v = Api::new(&remote.endpoint).post("/api/admin/bounce/v1", &body)?;
            print(&remote, &v, affected("bounced"));
        }
        Command::Rebind { selector, to_pool, to_queue, remote } => {
            let mut body = selector.json();
            body["to_pool"] = json!(to_pool);
            body["to_queue"] = json!(to_queue);
            let v = Api::new(&remote.endpoint).post("/api/admin/rebind/v1", &body)?;
            print(&remote, &v, affected("rebound"));
        }
        Command::Reload { remote } => {
            let v = Api::new(&remote.endpoint).post("/api/admin/reload/v1", &json!({}))?;
            print(&remote, &v, |v| match v["unchanged"].as_bool() {
                Some(true) => format!("unchanged: the policy files read as before (generation {})\n", v["generation"]),
                _ => show::reload(v),
            });
        }
        Command::Inject { from, to, subject, body, file, remote } => {
            let content = match file {
                Some(path) => {
                    json!(std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
                }
                None => {
                    json!({ "subject": subject, "text_body": body.unwrap_or_else(|| "Sent by petrel inject.".into()) })
                }
            };
            let recipients: Vec<Value> = to.iter().map(|t| json!({ "email": t })).collect();
            let request = json!({ "envelope_sender": from, "recipients": recipients, "content": content });
            let v = Api::new(&remote.endpoint).post("/api/inject/v1", &request)?;
            print(&remote, &v, |v| {
                let mut out = format!("injected: {} accepted, {} failed\n", v["success_count"], v["fail_count"]);
                for id in v["ids"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  id {}\n", id.as_str().unwrap_or_default()));
                }
                for e in v["errors"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}\n", e.as_str().unwrap_or_default()));
                }
                out
            });
        }
        Command::Inspect { id, body, remote } => {
            let path = format!("/api/admin/inspect-message/v1?id={id}&want_body={body}");
            let v = Api::new(&remote.endpoint).get(&path)?;
            print(&remote, &v, show::message);
        }
        Command::Route { from, to, meta, remote } => {
            let meta: serde_json::Map<String, Value> = meta.into_iter().map(|(k, v)| (k, json!(v))).collect();
            let request = json!({ "sender": from, "recipient": to, "meta": meta });
            let v = Api::new(&remote.endpoint).post("/api/admin/route/v1", &request)?;
            print(&remote, &v, show::route);
        }
        Command::Serve { .. }
        | Command::Validate { .. }
        | Command::ImportMomentum { .. }
        | Command::Logs { .. }
        | Command::Spool { .. } => {
            unreachable!("handled locally")
        }
    }
    Ok(())
}

fn tail(dir: Option<PathBuf>, policy: &std::path::Path, lines: usize, follow: bool) -> anyhow::Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let engine = PolicyEngine::load(policy, &system_hostname())
                .map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
            let logs = engine.current().config.logs.clone();
            logs.ok_or_else(|| anyhow::anyhow!("{} configures no logs; give --dir", policy.display()))?.log_dir
        }
    };
    logs::tail(&dir, lines, follow)
}

fn table(header: &[&str]) -> Table {
    show::table(header)
}

/// Sources and pools the policy defines late, as `petrel validate` found them.
#[derive(Default)]
pub struct LateBound {
    /// From `get_egress_source`.
    pub sources: Vec<std::sync::Arc<petrel_egress::EgressSource>>,
    /// From `get_egress_pool`.
    pub pools: Vec<std::sync::Arc<petrel_egress::EgressPool>>,
}

/// The readable summary `validate` prints.
pub fn describe(config: &InitConfig, late: &LateBound) -> String {
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    let mut sources = table(&["SOURCE", "ADDRESS", "EHLO DOMAIN", "REMOTE PORT", "DEFINED BY"]);
    let builtin =
        |name: &str, builtin: bool| if builtin && name == petrel_egress::DEFAULT_NAME { "built-in" } else { "init" };
    let init_sources =
        config.registry.sources().map(|s| (s, builtin(&s.name, config.registry.default_source_is_builtin())));
    for (s, by) in init_sources.chain(late.sources.iter().map(|s| (s, "get_egress_source"))) {
        sources.add_row(vec![
            s.name.clone(),
            s.source_address.map_or_else(|| "(system default)".into(), |a| a.to_string()),
            or_dash(s.ehlo_domain.clone()),
            or_dash(s.remote_port.map(|p| p.to_string())),
            by.into(),
        ]);
    }
    let mut pools = table(&["POOL", "SOURCE", "WEIGHT", "SHARE", "WHEN BUSY", "DEFINED BY"]);
    let init_pools = config.registry.pools().map(|p| (p, builtin(&p.name, config.registry.default_pool_is_builtin())));
    for (p, by) in init_pools.chain(late.pools.iter().map(|p| (p, "get_egress_pool"))) {
        let total = p.total_weight().max(1) as f64;
        let busy = match p.overflow {
            petrel_egress::Overflow::Wait => "wait",
            petrel_egress::Overflow::Spill => "spill",
        };
        for e in &p.entries {
            let share = format!("{:.1}%", 100.0 * f64::from(e.weight) / total);
            pools.add_row(vec![p.name.clone(), e.source.clone(), e.weight.to_string(), share, busy.into(), by.into()]);
        }
    }
    let mut http = table(&["HTTP LISTENER", "TRUSTED HOSTS", "TLS"]);
    for l in &config.http_listeners {
        let trusted: Vec<String> = l.trusted_hosts.iter().map(|n| n.to_string()).collect();
        http.add_row(vec![l.listen.to_string(), trusted.join(", "), if l.use_tls { "yes" } else { "no" }.into()]);
    }
    let mut listeners = table(&["ESMTP LISTENER", "HOSTNAME", "RELAY HOSTS", "MAX SIZE", "MAX RCPTS"]);
    for l in &config.listeners {
        let relay: Vec<String> = l.relay_hosts.iter().map(|n| n.to_string()).collect();
        listeners.add_row(vec![
            l.listen.to_string(),
            l.hostname.clone(),
            relay.join(", "),
            l.max_message_size.to_string(),
            l.max_recipients_per_message.to_string(),
        ]);
    }
    let logs = config.logs.as_ref().map_or_else(|| "not configured".into(), |l| l.log_dir.display().to_string());
    let mut out = format!(
        "{sources}\n\n{pools}\n\n{listeners}\n\n{http}\n\nSpool: data {} · meta {}\nLogs:  {logs}\n",
        config.spool.data.display(),
        config.spool.meta.display()
    );
    out.push_str(&delivery_features(config));
    out
}

/// The bounce classifier, log hooks, shaping automation, warm-up plans and
/// shared limits the policy configures, one line each.
fn delivery_features(config: &InitConfig) -> String {
    let mut out = String::new();
    if let Some(c) = &config.bounce_classifier {
        out.push_str(&format!("Bounce classifier: {}\n", c.files().join(", ")));
    }
    for hook in &config.log_hooks {
        out.push_str(&format!("Log hook: {} (headers: {})\n", hook.name, hook.headers.join(", ")));
    }
    if !config.automation.is_empty() {
        let names: Vec<&str> = config.automation.iter().map(|r| r.name.as_str()).collect();
        out.push_str(&format!("Shaping automation: {} rule(s): {}\n", names.len(), names.join(", ")));
    }
    if let Some(redis) = &config.redis_throttles {
        let c = &redis.config;
        out.push_str(&format!(
            "Shared limits: redis {} ({} node(s) share them; each uses 1/{} of a limit while redis is unreachable)\n",
            c.nodes.join(", "),
            c.node_count,
            c.node_count
        ));
        for note in &redis.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    for s in config.registry.sources() {
        if let Some(plan) = &s.warmup {
            let per = if plan.per_site { " per site" } else { "" };
            out.push_str(&format!(
                "Warm-up: {} from {}, {} day(s): {:?}{per}\n",
                s.name,
                plan.start,
                plan.daily.len(),
                plan.daily
            ));
        }
    }
    out
}
