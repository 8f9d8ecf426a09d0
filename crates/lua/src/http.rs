//! `kumo.http`: an HTTP client for policies (webhooks, log hooks, lookups),
//! on reqwest with rustls. Requests are async: a policy waiting for a
//! response yields its Lua state's worker rather than blocking it.

use crate::specs::DurationSpec;
use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use parking_lot::Mutex;
use serde::Deserialize;
use std::time::Duration;

/// `kumo.http.build_client{...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientSpec {
    user_agent: Option<String>,
    timeout: Option<DurationSpec>,
    pool_idle_timeout: Option<DurationSpec>,
    accept_invalid_certs: Option<bool>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A client; `close()` drops its idle connections.
struct LuaHttpClient(Mutex<Option<reqwest::Client>>);

/// A request being built; `send()` consumes it.
struct LuaRequest(Mutex<Option<reqwest::RequestBuilder>>);

/// A response with its body read.
struct LuaResponse {
    status: reqwest::StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn build_client(lua: &Lua, params: Option<Value>) -> mlua::Result<LuaHttpClient> {
    let spec: ClientSpec = match params {
        None | Some(Value::Nil) => ClientSpec::default(),
        Some(v) => crate::options::spec(lua, "kumo.http.build_client", v).map_err(mlua::Error::runtime)?,
    };
    let duration = |d: &Option<DurationSpec>, field: &str| -> mlua::Result<Option<Duration>> {
        d.as_ref().map(|d| d.to_duration(field)).transpose().map_err(mlua::Error::runtime)
    };
    let mut builder = reqwest::Client::builder()
        .timeout(duration(&spec.timeout, "timeout")?.unwrap_or(DEFAULT_TIMEOUT))
        .user_agent(spec.user_agent.unwrap_or_else(|| format!("petrel/{}", env!("CARGO_PKG_VERSION"))));
    if let Some(idle) = duration(&spec.pool_idle_timeout, "pool_idle_timeout")? {
        builder = builder.pool_idle_timeout(idle);
    }
    if spec.accept_invalid_certs == Some(true) {
        builder = builder.danger_accept_invalid_certs(true);
    }
    let client = builder.build().map_err(|e| mlua::Error::runtime(format!("kumo.http.build_client: {e}")))?;
    Ok(LuaHttpClient(Mutex::new(Some(client))))
}

impl UserData for LuaHttpClient {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        for (name, method) in
            [("get", reqwest::Method::GET), ("post", reqwest::Method::POST), ("put", reqwest::Method::PUT)]
        {
            methods.add_method(name, move |_, client, url: String| {
                let guard = client.0.lock();
                let client = guard.as_ref().ok_or_else(|| mlua::Error::runtime("kumo.http: the client is closed"))?;
                let url =
                    reqwest::Url::parse(&url).map_err(|e| mlua::Error::runtime(format!("kumo.http: {url}: {e}")))?;
                Ok(LuaRequest(Mutex::new(Some(client.request(method.clone(), url)))))
            });
        }
        methods.add_method("close", |_, client, ()| {
            client.0.lock().take();
            Ok(())
        });
    }
}

impl LuaRequest {
    /// Replace the builder with `edit(builder)`; methods return the request
    /// so calls chain (`client:post(url):header(k, v):body(b):send()`).
    fn edit(&self, edit: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> mlua::Result<()> {
        let mut slot = self.0.lock();
        let builder = slot.take().ok_or_else(|| mlua::Error::runtime("kumo.http: the request was already sent"))?;
        *slot = Some(edit(builder));
        Ok(())
    }
}

impl UserData for LuaRequest {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function("header", |_, (this, name, value): (mlua::AnyUserData, String, String)| {
            this.borrow::<LuaRequest>()?.edit(|b| b.header(name, value))?;
            Ok(this)
        });
        methods.add_function("headers", |_, (this, headers): (mlua::AnyUserData, Table)| {
            for pair in headers.pairs::<String, String>() {
                let (name, value) = pair?;
                this.borrow::<LuaRequest>()?.edit(|b| b.header(name, value))?;
            }
            Ok(this)
        });
        methods.add_function("basic_auth", |_, (this, user, password): (mlua::AnyUserData, String, Option<String>)| {
            this.borrow::<LuaRequest>()?.edit(|b| b.basic_auth(user, password))?;
            Ok(this)
        });
        methods.add_function("bearer_auth", |_, (this, token): (mlua::AnyUserData, String)| {
            this.borrow::<LuaRequest>()?.edit(|b| b.bearer_auth(token))?;
            Ok(this)
        });
        methods.add_function("body", |_, (this, body): (mlua::AnyUserData, mlua::LuaString)| {
            let bytes = body.as_bytes().to_vec();
            this.borrow::<LuaRequest>()?.edit(|b| b.body(bytes))?;
            Ok(this)
        });
        methods.add_function("timeout", |_, (this, timeout): (mlua::AnyUserData, Value)| {
            let lua_spec: DurationSpec = match timeout {
                Value::Number(n) => DurationSpec::Seconds(n),
                Value::Integer(n) => DurationSpec::Seconds(n as f64),
                Value::String(s) => DurationSpec::Text(s.to_str()?.to_string()),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "request:timeout: not a duration: {}",
                        other.type_name()
                    )));
                }
            };
            let duration = lua_spec.to_duration("timeout").map_err(mlua::Error::runtime)?;
            this.borrow::<LuaRequest>()?.edit(|b| b.timeout(duration))?;
            Ok(this)
        });
        for name in ["form_url_encoded", "form_multipart_data", "aws_sign_v4"] {
            methods.add_method(name, move |_, _, _: mlua::MultiValue| -> mlua::Result<()> {
                Err(mlua::Error::runtime(format!(
                    "request:{name} is documented by KumoMTA but not supported by Petrel yet"
                )))
            });
        }
        methods.add_async_method("send", |_, request, ()| async move {
            let builder = request.0.lock().take().ok_or_else(|| mlua::Error::runtime("kumo.http: already sent"))?;
            let response = builder.send().await.map_err(|e| mlua::Error::runtime(format!("kumo.http: {e}")))?;
            let status = response.status();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let body = response.bytes().await.map_err(|e| mlua::Error::runtime(format!("kumo.http: body: {e}")))?;
            Ok(LuaResponse { status, headers, body: body.to_vec() })
        });
    }
}

impl UserData for LuaResponse {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("status_code", |_, r, ()| Ok(r.status.as_u16()));
        methods.add_method("status_reason", |_, r, ()| Ok(r.status.canonical_reason().unwrap_or("").to_string()));
        methods.add_method("status_is_informational", |_, r, ()| Ok(r.status.is_informational()));
        methods.add_method("status_is_success", |_, r, ()| Ok(r.status.is_success()));
        methods.add_method("status_is_redirection", |_, r, ()| Ok(r.status.is_redirection()));
        methods.add_method("status_is_client_error", |_, r, ()| Ok(r.status.is_client_error()));
        methods.add_method("status_is_server_error", |_, r, ()| Ok(r.status.is_server_error()));
        methods.add_method("content_length", |_, r, ()| Ok(r.body.len()));
        methods.add_method("text", |_, r, ()| Ok(String::from_utf8_lossy(&r.body).into_owned()));
        methods.add_method("bytes", |lua, r, ()| lua.create_string(&r.body));
        methods.add_method("headers", |lua, r, ()| {
            let map = lua.create_table()?;
            for (name, value) in &r.headers {
                map.set(name.as_str(), value.as_str())?;
            }
            Ok(map)
        });
        methods.add_method("json", |lua, r, ()| {
            let value: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|e| mlua::Error::runtime(format!("response:json: {e}")))?;
            lua.to_value(&value)
        });
    }
}

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    http.set("build_client", lua.create_function(build_client)?)?;
    kumo.set("http", http)?;
    Ok(())
}
