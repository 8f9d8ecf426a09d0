//! The core's policy traits, answered by the policy's event handlers.

use crate::egress_events::{DEFAULT_TTL, MakePoolSpec, MakeSourceSpec};
use crate::engine::PolicyEngine;
use crate::error::describe;
use crate::kumo::{Rejection, event_handler, handler};
use crate::message::{
    LuaAddress, LuaConnMeta, LuaEgressPath, LuaListenerDomain, LuaMessage, LuaQueueConfig, from_result,
};
use crate::specs::{EgressPathSpec, ListenerDomainSpec, QueueConfigSpec};
use async_trait::async_trait;
use mlua::{AnyUserData, IntoLuaMulti, Lua, Value};
use petrel_delivery::{EgressPathConfig, EgressPolicy, EgressPolicyError};
use petrel_egress::{EgressPool, EgressSource, Registry};
use petrel_http_api::{AuthInfo, InjectPolicy};
use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::{QueueConfig, QueueKey, QueuePolicy, QueuePolicyError};
use petrel_smtp_server::{ConnMeta, ListenerDomain, PolicyError, SessionPolicy};
use std::sync::Arc;

fn object<T: serde::Serialize>(value: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(value).expect("serializable") {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// Run a per-message event on a copy of `message` and keep its edits. The
/// handler's result must be nothing: its decisions go through
/// `kumo.reject` and the message's methods.
async fn message_event(
    engine: &PolicyEngine,
    event: &'static str,
    message: &mut Message,
    context: &(impl serde::Serialize + Clone + Send + Sync + 'static),
) -> Result<(), mlua::Error> {
    // Copied only once a handler is about to run (none: nothing is copied).
    let original: &Message = message;
    let edited = engine
        .call_event(
            event,
            move |lua| {
                let Some(handler) = event_handler(lua, event)? else { return Ok(None) };
                let msg = lua.create_userdata(LuaMessage(original.clone()))?;
                let mut args = vec![Value::UserData(msg.clone())];
                // Most handlers are `function(msg)`: a second argument they
                // cannot see is not worth a userdata.
                if handler.sees(2) {
                    let context = context.clone();
                    args.push(Value::UserData(lua.create_userdata(LuaConnMeta::lazy(move || object(&context)))?));
                }
                Ok(Some((handler.func, mlua::MultiValue::from_vec(args), msg)))
            },
            move |_, result, msg: AnyUserData| {
                nothing(event, result)?;
                Ok(msg.take::<LuaMessage>()?.0)
            },
        )
        .await?;
    if let Some(edited) = edited {
        *message = edited;
    }
    Ok(())
}

/// A handler's error as the core sees it: `kumo.reject` carries its reply;
/// anything else is a failure (the client is told to retry).
fn session_error(e: mlua::Error) -> PolicyError {
    match e.downcast_ref::<Rejection>() {
        Some(r) => PolicyError::Reject { code: r.code, text: r.text.clone() },
        None => PolicyError::Failed(describe(&e)),
    }
}

/// Call `event` with the arguments `args` builds in the state; `check`
/// turns its result into the decision, or fails on a value the event does
/// not document. `None` when the policy has no handler for it.
async fn call<R: Send + 'static>(
    engine: &PolicyEngine,
    event: &'static str,
    check: fn(&str, Value) -> mlua::Result<R>,
    args: impl FnOnce(&Lua) -> mlua::Result<mlua::MultiValue>,
) -> Result<Option<R>, mlua::Error> {
    engine.call_event(event, move |lua| prepared(lua, event, args), move |_, value, ()| check(event, value)).await
}

/// `event`'s handler with the arguments `args` builds; `None` without one.
fn prepared(
    lua: &Lua,
    event: &str,
    args: impl FnOnce(&Lua) -> mlua::Result<mlua::MultiValue>,
) -> mlua::Result<Option<crate::engine::Prepared<()>>> {
    match handler(lua, event)? {
        Some(f) => Ok(Some((f, args(lua)?, ()))),
        None => Ok(None),
    }
}

fn unexpected(event: &str, wanted: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!("{event} must return {wanted}, not a {}", got.type_name()))
}

/// Events whose answer is "go on" or `kumo.reject`: any returned value is
/// a policy mistake, never silently taken as a decision.
fn nothing(event: &str, value: Value) -> mlua::Result<()> {
    match value {
        Value::Nil => Ok(()),
        other => Err(unexpected(event, "nothing (refuse with kumo.reject)", &other)),
    }
}

/// Credential checks: only `true` lets the client in, and anything but a
/// boolean is an error rather than a guess.
fn boolean(event: &str, value: Value) -> mlua::Result<bool> {
    match value {
        Value::Boolean(b) => Ok(b),
        other => Err(unexpected(event, "true or false", &other)),
    }
}

fn conn_arg(conn: &ConnMeta) -> LuaConnMeta {
    let conn = conn.clone();
    LuaConnMeta::lazy(move || object(&conn))
}

#[async_trait]
impl SessionPolicy for PolicyEngine {
    async fn ehlo(&self, domain: &str, conn: &ConnMeta) -> Result<(), PolicyError> {
        const EVENT: &str = "smtp_server_ehlo";
        let (domain, conn) = (domain.to_string(), conn_arg(conn));
        let result = call(self, EVENT, nothing, move |lua| (domain, conn).into_lua_multi(lua)).await;
        result.map(|_| ()).map_err(session_error)
    }

    async fn mail_from(&self, sender: &EnvelopeAddress, conn: &ConnMeta) -> Result<(), PolicyError> {
        const EVENT: &str = "smtp_server_mail_from";
        // Most policies have no handler: skip building the arguments.
        if !self.current().handles(EVENT) {
            return Ok(());
        }
        let (sender, conn) = (LuaAddress(sender.clone()), conn_arg(conn));
        let result = call(self, EVENT, nothing, move |lua| (sender, conn).into_lua_multi(lua)).await;
        result.map(|_| ()).map_err(session_error)
    }

    async fn rcpt_to(&self, recipient: &EnvelopeAddress, conn: &ConnMeta) -> Result<(), PolicyError> {
        const EVENT: &str = "smtp_server_rcpt_to";
        if !self.current().handles(EVENT) {
            return Ok(());
        }
        let (recipient, conn) = (LuaAddress(recipient.clone()), conn_arg(conn));
        let result = call(self, EVENT, nothing, move |lua| (recipient, conn).into_lua_multi(lua)).await;
        result.map(|_| ()).map_err(session_error)
    }

    async fn listener_domain(
        &self,
        domain: &str,
        listener: &str,
        conn: &ConnMeta,
    ) -> Result<Option<ListenerDomain>, PolicyError> {
        let (domain, listener, conn) = (domain.to_string(), listener.to_string(), conn_arg(conn));
        const EVENT: &str = "get_listener_domain";
        self.call_event(
            EVENT,
            move |lua| prepared(lua, EVENT, move |lua| (domain, listener, conn).into_lua_multi(lua)),
            |lua, value, ()| from_result(lua, value, |s: ListenerDomainSpec| s.into_domain().map(LuaListenerDomain)),
        )
        .await
        .map(|d| d.flatten().map(|d| d.0))
        .map_err(session_error)
    }

    async fn auth_plain(&self, authz: &str, authc: &str, password: &str, conn: &ConnMeta) -> Result<bool, PolicyError> {
        const EVENT: &str = "smtp_server_auth_plain";
        let args = (authz.to_string(), authc.to_string(), password.to_string(), conn_arg(conn));
        let result = call(self, EVENT, boolean, move |lua| args.into_lua_multi(lua)).await;
        result.map(|r| r.unwrap_or(false)).map_err(session_error)
    }

    async fn message_received(&self, message: &mut Message, conn: &ConnMeta) -> Result<(), PolicyError> {
        message_event(self, "smtp_server_message_received", message, conn).await.map_err(session_error)
    }
}

#[async_trait]
impl InjectPolicy for PolicyEngine {
    async fn validate_basic(&self, user: &str, password: &str) -> Result<bool, String> {
        const EVENT: &str = "http_server_validate_auth_basic";
        let args = (user.to_string(), password.to_string());
        let verdict = call(self, EVENT, boolean, move |lua| args.into_lua_multi(lua)).await;
        verdict.map(|r| r.unwrap_or(false)).map_err(|e| describe(&e))
    }

    async fn validate_bearer(&self, token: &str) -> Result<bool, String> {
        const EVENT: &str = "http_server_validate_auth_bearer";
        let token = token.to_string();
        let verdict = call(self, EVENT, boolean, move |lua| token.into_lua_multi(lua)).await;
        verdict.map(|r| r.unwrap_or(false)).map_err(|e| describe(&e))
    }

    async fn message_generated(&self, message: &mut Message, auth: &AuthInfo) -> Result<(), PolicyError> {
        message_event(self, "http_message_generated", message, auth).await.map_err(session_error)
    }
}

#[async_trait]
impl QueuePolicy for PolicyEngine {
    async fn queue_config(&self, key: &QueueKey) -> Result<QueueConfig, QueuePolicyError> {
        let args = (key.domain.clone(), key.tenant.clone(), key.campaign.clone(), key.routing_domain.clone());
        const EVENT: &str = "get_queue_config";
        self.call_event(
            EVENT,
            move |lua| prepared(lua, EVENT, move |lua| args.into_lua_multi(lua)),
            |lua, value, ()| from_result(lua, value, |s: QueueConfigSpec| s.into_config().map(LuaQueueConfig)),
        )
        .await
        .map(|c| c.flatten().map(|c| c.0).unwrap_or_default())
        .map_err(|e| QueuePolicyError(format!("get_queue_config: {}", describe(&e))))
    }
}

/// Ask `event` (`get_egress_pool` / `get_egress_source`) for `name`: its
/// `kumo.make_*` object or a plain table of the same fields.
async fn late_bound<T, S>(
    engine: &PolicyEngine,
    event: &'static str,
    name: &str,
    build: fn(S) -> Result<T, String>,
) -> Result<Option<T>, EgressPolicyError>
where
    T: 'static + Clone + Send,
    S: serde::de::DeserializeOwned,
{
    let arg = name.to_string();
    engine
        .call_event(
            event,
            move |lua| prepared(lua, event, move |lua| arg.into_lua_multi(lua)),
            move |lua, value, ()| from_result(lua, value, build),
        )
        .await
        .map(Option::flatten)
        .map_err(|e| EgressPolicyError(format!("{event}({name:?}): {}", describe(&e))))
}

/// An answer for another name would put mail under the wrong name in
/// every log and selector.
fn check_name(event: &str, asked: &str, answered: &str) -> Result<(), EgressPolicyError> {
    if asked == answered {
        Ok(())
    } else {
        Err(EgressPolicyError(format!("{event}({asked:?}) returned a definition named {answered:?}")))
    }
}

#[async_trait]
impl petrel_queue::LogHookPolicy for PolicyEngine {
    async fn should_enqueue_log_record(&self, message: &mut Message, hook: &str) -> Result<bool, PolicyError> {
        const EVENT: &str = "should_enqueue_log_record";
        let (copy, hook) = (message.clone(), hook.to_string());
        let decided = self
            .call_event(
                EVENT,
                move |lua| {
                    let Some(func) = handler(lua, EVENT)? else { return Ok(None) };
                    let msg = lua.create_userdata(LuaMessage(copy))?;
                    let args = (msg.clone(), hook).into_lua_multi(lua)?;
                    Ok(Some((func, args, msg)))
                },
                move |_, result, msg: AnyUserData| {
                    let keep = match result {
                        Value::Nil => false,
                        other => boolean(EVENT, other)?,
                    };
                    Ok((keep, msg.take::<LuaMessage>()?.0))
                },
            )
            .await
            .map_err(session_error)?;
        match decided {
            Some((keep, edited)) => {
                *message = edited;
                Ok(keep)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl EgressPolicy for PolicyEngine {
    fn registry(&self) -> Arc<Registry> {
        self.current().config.registry.clone()
    }

    async fn custom_send(
        &self,
        constructor: &str,
        batch_size: usize,
        key: &QueueKey,
        messages: Vec<Message>,
    ) -> Vec<petrel_delivery::CustomOutcome> {
        PolicyEngine::custom_send(self, constructor, batch_size, key, messages).await
    }

    async fn egress_pool(&self, name: &str) -> Result<Option<Arc<EgressPool>>, EgressPolicyError> {
        const EVENT: &str = "get_egress_pool";
        let generation = self.current();
        // Asked for every message of the default pool: without a handler,
        // answer without taking the cache's lock.
        if !generation.handles(EVENT) {
            return Ok(None);
        }
        let shared = generation.shared.clone();
        if let Some(known) = shared.egress.pools.get(name) {
            return Ok(known);
        }
        let answer = late_bound(self, EVENT, name, |s: MakePoolSpec| s.build()).await?;
        if let Some(answer) = &answer {
            check_name(EVENT, name, &answer.pool.name)?;
        }
        let (pool, ttl) = answer.map_or((None, DEFAULT_TTL), |a| (Some(a.pool), a.ttl));
        shared.egress.pools.put(name, pool.clone(), ttl);
        Ok(pool)
    }

    async fn egress_source(&self, name: &str) -> Result<Option<Arc<EgressSource>>, EgressPolicyError> {
        const EVENT: &str = "get_egress_source";
        let generation = self.current();
        if !generation.handles(EVENT) {
            return Ok(None);
        }
        let shared = generation.shared.clone();
        if let Some(known) = shared.egress.sources.get(name) {
            return Ok(known);
        }
        let answer = late_bound(self, EVENT, name, |s: MakeSourceSpec| s.build()).await?;
        if let Some(answer) = &answer {
            check_name(EVENT, name, &answer.source.name)?;
        }
        let (source, ttl) = answer.map_or((None, DEFAULT_TTL), |a| (Some(a.source), a.ttl));
        shared.egress.sources.put(name, source.clone(), ttl);
        Ok(source)
    }

    async fn egress_path_config(
        &self,
        routing_domain: &str,
        source: &str,
        site: &str,
    ) -> Result<EgressPathConfig, EgressPolicyError> {
        let args = (routing_domain.to_string(), source.to_string(), site.to_string());
        const EVENT: &str = "get_egress_path_config";
        self.call_event(
            EVENT,
            move |lua| prepared(lua, EVENT, move |lua| args.into_lua_multi(lua)),
            |lua, value, ()| from_result(lua, value, |s: EgressPathSpec| s.into_config().map(LuaEgressPath)),
        )
        .await
        .map(|p| p.flatten().map(|p| p.0).unwrap_or_default())
        .map_err(|e| EgressPolicyError(format!("get_egress_path_config: {}", describe(&e))))
    }
}
