//! `custom_lua` delivery: the queue's constructor event (`make.webhook`)
//! returns a connection object; its `send(message)` returns a disposition
//! or raises `kumo.reject(code, text)`; with a batch size above one,
//! `send_batch(messages)` takes several at once. `close()` is called at
//! the end when the object has one.

use crate::engine::PolicyEngine;
use crate::error::describe;
use crate::kumo::{Rejection, handler};
use crate::message::LuaMessage;
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, Table, Value};
use petrel_delivery::CustomOutcome;
use petrel_message::Message;
use petrel_queue::QueueKey;

/// A raised error as an outcome: `kumo.reject` keeps its reply; anything
/// else is a transient failure naming the error.
fn failed(e: &mlua::Error) -> CustomOutcome {
    match e.downcast_ref::<Rejection>() {
        Some(r) => CustomOutcome::Failed { code: r.code, text: r.text.clone() },
        None => CustomOutcome::Failed { code: 451, text: format!("4.3.0 {}", describe(e)) },
    }
}

fn disposition(value: Value) -> String {
    match value {
        Value::String(s) => s.to_string_lossy().to_string(),
        Value::Nil => "OK".to_string(),
        other => other.to_string().unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// Drive one connection over `messages`, in the state: the outcomes.
async fn drive(conn: Table, batch_size: usize, messages: Vec<AnyUserData>) -> Vec<CustomOutcome> {
    let mut outcomes = Vec::with_capacity(messages.len());
    if batch_size > 1 {
        let send_batch: Result<Function, _> = conn.get("send_batch");
        for chunk in messages.chunks(batch_size) {
            let result = match &send_batch {
                Ok(f) => f.call_async::<Value>((conn.clone(), chunk.to_vec())).await,
                Err(e) => Err(e.clone()),
            };
            let outcome = result.map(|v| CustomOutcome::Delivered(disposition(v))).unwrap_or_else(|e| failed(&e));
            // A batch to retry stops here: what follows waits for it.
            let stop = matches!(&outcome, CustomOutcome::Failed { code, .. } if *code < 500);
            outcomes.extend(std::iter::repeat_n(outcome, chunk.len()));
            if stop {
                break;
            }
        }
    } else {
        let send: Result<Function, _> = conn.get("send");
        for message in messages {
            let result = match &send {
                Ok(f) => f.call_async::<Value>((conn.clone(), message)).await,
                Err(e) => Err(e.clone()),
            };
            let outcome = result.map(|v| CustomOutcome::Delivered(disposition(v))).unwrap_or_else(|e| failed(&e));
            let stop = matches!(&outcome, CustomOutcome::Failed { code, .. } if *code < 500);
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
    }
    if let Ok(close) = conn.get::<Function>("close") {
        let _ = close.call_async::<()>(conn.clone()).await;
    }
    outcomes
}

impl PolicyEngine {
    /// Deliver `messages` through the policy's `constructor` event.
    pub(crate) async fn custom_send(
        &self,
        constructor: &str,
        batch_size: usize,
        key: &QueueKey,
        messages: Vec<Message>,
    ) -> Vec<CustomOutcome> {
        let count = messages.len();
        let event = constructor.to_string();
        let (domain, tenant, campaign) = (key.domain.clone(), key.tenant.clone(), key.campaign.clone());
        let result = self
            .call_event(
                constructor,
                move |lua: &Lua| {
                    let Some(ctor) = handler(lua, &event)? else { return Ok(None) };
                    let driver = lua.create_async_function(
                        move |_,
                              (ctor, domain, tenant, campaign, batch, msgs): (
                            Function,
                            String,
                            Option<String>,
                            Option<String>,
                            usize,
                            Vec<AnyUserData>,
                        )| async move {
                            let conn: Table = ctor.call_async((domain, tenant, campaign)).await?;
                            let outcomes = drive(conn, batch, msgs).await;
                            Ok(OutcomeList(outcomes))
                        },
                    )?;
                    let msgs: Vec<AnyUserData> = messages
                        .into_iter()
                        .map(|m| lua.create_userdata(LuaMessage(m)))
                        .collect::<mlua::Result<_>>()?;
                    let args = (ctor, domain, tenant, campaign, batch_size, msgs).into_lua_multi(lua)?;
                    Ok(Some((driver, args, ())))
                },
                |_, value, ()| match value {
                    Value::UserData(ud) => Ok(ud.take::<OutcomeList>()?.0),
                    other => Err(mlua::Error::runtime(format!("custom_lua driver returned {}", other.type_name()))),
                },
            )
            .await;
        match result {
            Ok(Some(outcomes)) => outcomes,
            Ok(None) => vec![
                CustomOutcome::Failed {
                    code: 451,
                    text: format!("4.3.0 the policy has no handler for the custom_lua constructor {constructor}"),
                };
                count
            ],
            Err(e) => vec![failed(&e); count],
        }
    }
}

/// The outcomes, carried out of the state as userdata.
struct OutcomeList(Vec<CustomOutcome>);

impl mlua::UserData for OutcomeList {}
