//! `kumo.encode` (base32/base64/hex in their padded, unpadded and URL
//! forms), `kumo.digest` (SHA-1, SHA-2, SHA-3, HMAC, CRC32, returning a
//! result object with every encoding as a field) and `kumo.uuid`.

use data_encoding::{
    BASE32, BASE32_NOPAD, BASE32HEX, BASE32HEX_NOPAD, BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, Encoding,
    HEXLOWER, HEXLOWER_PERMISSIVE,
};
use mlua::{Lua, LuaSerdeExt, MetaMethod, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value};

const ENCODINGS: [(&str, &Encoding); 8] = [
    ("base32", &BASE32),
    ("base32_nopad", &BASE32_NOPAD),
    ("base32hex", &BASE32HEX),
    ("base32hex_nopad", &BASE32HEX_NOPAD),
    ("base64", &BASE64),
    ("base64_nopad", &BASE64_NOPAD),
    ("base64url", &BASE64URL),
    ("base64url_nopad", &BASE64URL_NOPAD),
];

/// Bytes with every encoding as a field (`hex`, `base64`, `bytes`, …),
/// `tostring` giving hex: KumoMTA's BinaryResult.
struct BinaryResult(Vec<u8>);

impl UserData for BinaryResult {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("bytes", |lua, r| lua.create_string(&r.0));
        fields.add_field_method_get("hex", |_, r| Ok(HEXLOWER.encode(&r.0)));
        for (name, encoding) in ENCODINGS {
            fields.add_field_method_get(name, move |_, r| Ok(encoding.encode(&r.0)));
        }
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, r, ()| Ok(HEXLOWER.encode(&r.0)));
    }
}

/// Each argument's bytes: strings as they are, anything else as JSON.
fn feed(lua: &Lua, args: MultiValue, mut update: impl FnMut(&[u8])) -> mlua::Result<()> {
    for arg in args {
        match arg {
            Value::String(s) => update(&s.as_bytes()),
            other => {
                let json: serde_json::Value = lua.from_value(other)?;
                update(serde_json::to_string(&json).map_err(mlua::Error::external)?.as_bytes());
            }
        }
    }
    Ok(())
}

fn digest<D: sha2::Digest>(lua: &Lua, args: MultiValue) -> mlua::Result<BinaryResult> {
    let mut hasher = D::new();
    feed(lua, args, |b| hasher.update(b))?;
    Ok(BinaryResult(hasher.finalize().to_vec()))
}

/// The bytes of a KeySource: a string is a file to read, `{ key_data =
/// ... }` the key itself; the vault sources are not supported yet.
pub(crate) fn key_source(lua: &Lua, key: Value, what: &str) -> mlua::Result<Vec<u8>> {
    match key {
        Value::String(path) => {
            let path = path.to_str()?.to_string();
            crate::fingerprint::note_data_file(lua, std::path::Path::new(&path));
            std::fs::read(&path).map_err(|e| mlua::Error::runtime(format!("{what}: key file {path}: {e}")))
        }
        Value::Table(t) => match t.get::<Option<mlua::LuaString>>("key_data")? {
            Some(data) => Ok(data.as_bytes().to_vec()),
            None => Err(mlua::Error::runtime(format!(
                "{what}: only a file name or {{ key_data = ... }} key source is supported by Petrel yet (no vault)"
            ))),
        },
        other => Err(mlua::Error::runtime(format!("{what}: a key source, not a {}", other.type_name()))),
    }
}

fn hmac<D>(lua: &Lua, key: Value, message: mlua::LuaString) -> mlua::Result<BinaryResult>
where
    D: hmac::digest::Digest + hmac::digest::core_api::BlockSizeUser,
{
    use hmac::Mac;
    let key = key_source(lua, key, "kumo.digest.hmac")?;
    let mut mac = hmac::SimpleHmac::<D>::new_from_slice(&key).map_err(mlua::Error::external)?;
    mac.update(&message.as_bytes());
    Ok(BinaryResult(mac.finalize().into_bytes().to_vec()))
}

fn install_digest(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let d = lua.create_table()?;
    d.set("sha1", lua.create_function(|lua, a: MultiValue| digest::<sha1::Sha1>(lua, a))?)?;
    d.set("sha224", lua.create_function(|lua, a: MultiValue| digest::<sha2::Sha224>(lua, a))?)?;
    d.set("sha256", lua.create_function(|lua, a: MultiValue| digest::<sha2::Sha256>(lua, a))?)?;
    d.set("sha384", lua.create_function(|lua, a: MultiValue| digest::<sha2::Sha384>(lua, a))?)?;
    d.set("sha512", lua.create_function(|lua, a: MultiValue| digest::<sha2::Sha512>(lua, a))?)?;
    d.set("sha512_256", lua.create_function(|lua, a: MultiValue| digest::<sha2::Sha512_256>(lua, a))?)?;
    d.set("sha3_256", lua.create_function(|lua, a: MultiValue| digest::<sha3::Sha3_256>(lua, a))?)?;
    d.set("sha3_384", lua.create_function(|lua, a: MultiValue| digest::<sha3::Sha3_384>(lua, a))?)?;
    d.set("sha3_512", lua.create_function(|lua, a: MultiValue| digest::<sha3::Sha3_512>(lua, a))?)?;
    d.set(
        "crc32",
        lua.create_function(|lua, a: MultiValue| {
            let mut hasher = crc32fast::Hasher::new();
            feed(lua, a, |b| hasher.update(b))?;
            Ok(BinaryResult(hasher.finalize().to_be_bytes().to_vec()))
        })?,
    )?;
    d.set("hmac_sha1", lua.create_function(|lua, (k, m): (Value, mlua::LuaString)| hmac::<sha1::Sha1>(lua, k, m))?)?;
    d.set(
        "hmac_sha224",
        lua.create_function(|lua, (k, m): (Value, mlua::LuaString)| hmac::<sha2::Sha224>(lua, k, m))?,
    )?;
    d.set(
        "hmac_sha256",
        lua.create_function(|lua, (k, m): (Value, mlua::LuaString)| hmac::<sha2::Sha256>(lua, k, m))?,
    )?;
    d.set(
        "hmac_sha384",
        lua.create_function(|lua, (k, m): (Value, mlua::LuaString)| hmac::<sha2::Sha384>(lua, k, m))?,
    )?;
    d.set(
        "hmac_sha512",
        lua.create_function(|lua, (k, m): (Value, mlua::LuaString)| hmac::<sha2::Sha512>(lua, k, m))?,
    )?;
    kumo.set("digest", d)
}

fn install_encode(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let e = lua.create_table()?;
    const HEX: [(&str, &Encoding, &Encoding); 1] = [("hex", &HEXLOWER, &HEXLOWER_PERMISSIVE)];
    let all = ENCODINGS.iter().map(|(n, enc)| (*n, *enc, *enc)).chain(HEX);
    for (name, encoder, decoder) in all {
        e.set(
            format!("{name}_encode"),
            lua.create_function(move |_, data: mlua::LuaString| Ok(encoder.encode(&data.as_bytes())))?,
        )?;
        e.set(
            format!("{name}_decode"),
            lua.create_function(move |lua, text: mlua::LuaString| {
                let bytes = decoder
                    .decode(&text.as_bytes())
                    .map_err(|err| mlua::Error::runtime(format!("kumo.encode.{name}_decode: {err}")))?;
                lua.create_string(bytes)
            })?,
        )?;
    }
    kumo.set("encode", e)
}

/// KumoMTA's Uuid object: `tostring` and `hyphenated`, `simple`,
/// `braced`, `urn`, `bytes`.
struct LuaUuid(uuid::Uuid);

impl UserData for LuaUuid {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("bytes", |lua, u| lua.create_string(u.0.as_bytes()));
        fields.add_field_method_get("hyphenated", |_, u| Ok(u.0.hyphenated().to_string()));
        fields.add_field_method_get("simple", |_, u| Ok(u.0.simple().to_string()));
        fields.add_field_method_get("braced", |_, u| Ok(u.0.braced().to_string()));
        fields.add_field_method_get("urn", |_, u| Ok(u.0.urn().to_string()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, u, ()| Ok(u.0.hyphenated().to_string()));
    }
}

fn install_uuid(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let u = lua.create_table()?;
    u.set("new_v4", lua.create_function(|_, ()| Ok(LuaUuid(uuid::Uuid::new_v4())))?)?;
    u.set("new_v7", lua.create_function(|_, ()| Ok(LuaUuid(uuid::Uuid::now_v7())))?)?;
    u.set(
        "parse",
        lua.create_function(|_, text: String| {
            uuid::Uuid::parse_str(&text).map(LuaUuid).map_err(|e| mlua::Error::runtime(format!("kumo.uuid.parse: {e}")))
        })?,
    )?;
    kumo.set("uuid", u)
}

/// Add `kumo.encode`, `kumo.digest`, `kumo.uuid` and `kumo.secrets`.
pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let secrets = lua.create_table()?;
    secrets.set(
        "load",
        lua.create_function(|lua, source: Value| lua.create_string(key_source(lua, source, "kumo.secrets.load")?))?,
    )?;
    kumo.set("secrets", secrets)?;
    install_encode(lua, kumo)?;
    install_digest(lua, kumo)?;
    install_uuid(lua, kumo)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_examples_hold() {
        crate::run_with(
            super::install,
            r#"
            local d = kumo.digest.sha1 'hello'
            assert(tostring(d) == d.hex and d.hex == 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
            assert(d.bytes == '\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2\xda\xbe\xde\x0f\x3b\x48\x2c\xd9\xae\xa9\x43\x4d')
            assert(kumo.digest.sha256('hel', 'lo').hex == kumo.digest.sha256('hello').hex)
            assert(kumo.digest.sha256('').hex == 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
            assert(kumo.digest.hmac_sha256({ key_data = 'key' }, 'The quick brown fox jumps over the lazy dog').hex
              == 'f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8')
            assert(kumo.digest.hmac_sha256({ key_data = 'your key' }, 'your message').hex
              == '87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c')
            assert(not pcall(kumo.digest.hmac_sha256, { vault_path = 'x' }, 'm'))
            assert(kumo.secrets.load { key_data = 'pw' } == 'pw')
            assert(kumo.digest.crc32('hello').hex == '3610a686')
            local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
            assert(tostring(u) == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
            assert(u.simple == '699946303e2711ef91fccc28aa0a5c5a')
            assert(u.braced == '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}')
            assert(u.urn == 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')
            assert(kumo.encode.base64url_nopad_encode(u.bytes) == 'aZlGMD4nEe-R_MwoqgpcWg')
            assert(kumo.encode.base64_decode(kumo.encode.base64_encode('hi there')) == 'hi there')
            assert(kumo.encode.hex_encode('hi') == '6869' and kumo.encode.hex_decode('6869') == 'hi')
            assert(kumo.encode.base32_encode('hi') == 'NBUQ====')
            assert(not pcall(kumo.encode.base64_decode, '!!'))
            assert(#tostring(kumo.uuid.new_v4()) == 36)
            "#,
        )
        .unwrap();
    }
}
