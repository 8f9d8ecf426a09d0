//! `kumo.dkim.rsa_sha256_signer` / `ed25519_signer` and `msg:dkim_sign`.
//! A signer is built once per distinct parameter table and kept for its
//! `ttl` in the generation's cache, so a key file is read and parsed once
//! however many messages it signs; a reload starts a fresh cache.

use crate::egress_events::TtlCache;
use crate::specs::DurationSpec;
use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use petrel_message::{Canon, DkimAlgorithm, DkimSigningKey, DkimSpec};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The signers of one generation, by algorithm and parameters.
pub(crate) type SignerCache = TtlCache<Arc<DkimSigningKey>>;

/// A signer handed to Lua; `msg:dkim_sign` takes it.
#[derive(Clone)]
pub(crate) struct LuaDkimSigner(pub Arc<DkimSigningKey>);

impl UserData for LuaDkimSigner {}

/// The documented parameters of both signer constructors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerSpec {
    domain: String,
    selector: String,
    headers: Vec<String>,
    #[serde(default)]
    atps: Option<String>,
    #[serde(default)]
    agent_user_identifier: Option<String>,
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    body_length: bool,
    #[serde(default)]
    reporting: bool,
    #[serde(default)]
    header_canonicalization: Canon,
    #[serde(default)]
    body_canonicalization: Canon,
    #[serde(default)]
    over_sign: bool,
    #[serde(default)]
    ttl: Option<DurationSpec>,
}

const DEFAULT_TTL: Duration = Duration::from_secs(300);

fn make_signer(lua: &Lua, algorithm: DkimAlgorithm, params: Table) -> mlua::Result<LuaDkimSigner> {
    let what = match algorithm {
        DkimAlgorithm::RsaSha256 => "kumo.dkim.rsa_sha256_signer",
        DkimAlgorithm::Ed25519 => "kumo.dkim.ed25519_signer",
    };
    // Tables become JSON with sorted keys, so equal parameters share a signer.
    let as_json: serde_json::Value = lua.from_value(Value::Table(params.clone()))?;
    let cache_key = format!("{algorithm:?}:{as_json}");
    let cache = lua.app_data_ref::<Arc<SignerCache>>().map(|c| c.clone());
    if let Some(Some(signer)) = cache.as_ref().and_then(|c| c.get(&cache_key)) {
        return Ok(LuaDkimSigner(signer));
    }
    let key_value: Value = params.get("key")?;
    if key_value.is_nil() {
        return Err(mlua::Error::runtime(format!("{}: {what}: `key` is required", crate::error::caller_location(lua))));
    }
    let without_key = lua.create_table()?;
    for pair in params.pairs::<Value, Value>() {
        let (k, v) = pair?;
        if k.as_string().is_none_or(|s| s.as_bytes().as_ref() != b"key") {
            without_key.set(k, v)?;
        }
    }
    let spec: SignerSpec = crate::options::spec(lua, what, Value::Table(without_key)).map_err(mlua::Error::runtime)?;
    let ttl = match &spec.ttl {
        Some(ttl) => ttl.to_duration("ttl").map_err(|e| mlua::Error::runtime(format!("{what}: {e}")))?,
        None => DEFAULT_TTL,
    };
    let source = describe_key(&key_value);
    let bytes = crate::codec::key_source(lua, key_value, what)?;
    let dkim = DkimSpec {
        domain: spec.domain,
        selector: spec.selector,
        headers: spec.headers,
        over_sign: spec.over_sign,
        header_canonicalization: spec.header_canonicalization,
        body_canonicalization: spec.body_canonicalization,
        expiration: spec.expiration,
        atps: spec.atps,
        agent_user_identifier: spec.agent_user_identifier,
        body_length: spec.body_length,
        reporting: spec.reporting,
    };
    let signer = DkimSigningKey::new(algorithm, &bytes, dkim)
        .map(Arc::new)
        .map_err(|e| mlua::Error::runtime(format!("{what}: key {source}: {e}")))?;
    if let Some(cache) = cache {
        cache.put(&cache_key, Some(signer.clone()), ttl);
    }
    Ok(LuaDkimSigner(signer))
}

/// Where a key came from, for errors: the file name, or "key_data".
fn describe_key(key: &Value) -> String {
    match key {
        Value::String(path) => path.to_string_lossy().to_string(),
        _ => "key_data".to_string(),
    }
}

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let dkim = lua.create_table()?;
    dkim.set(
        "rsa_sha256_signer",
        lua.create_function(|lua, params: Table| make_signer(lua, DkimAlgorithm::RsaSha256, params))?,
    )?;
    dkim.set(
        "ed25519_signer",
        lua.create_function(|lua, params: Table| make_signer(lua, DkimAlgorithm::Ed25519, params))?,
    )?;
    kumo.set("dkim", dkim)?;
    Ok(())
}

/// `msg:dkim_sign(signer)`: prepend the signature for the message as it is
/// now; every later edit of a signed header or the body breaks it.
pub(crate) fn add_methods<T, M>(methods: &mut M)
where
    T: AsMut<petrel_message::Message> + AsRef<petrel_message::Message>,
    M: UserDataMethods<T>,
{
    methods.add_method_mut("dkim_sign", |_, m, signer: mlua::UserDataRef<LuaDkimSigner>| {
        let data = m.as_ref().data.as_deref().unwrap_or_default();
        let signed = signer.0.sign(data).map_err(|e| mlua::Error::runtime(format!("msg:dkim_sign: {e}")))?;
        m.as_mut().set_data(Arc::from(signed));
        Ok(())
    });
}
