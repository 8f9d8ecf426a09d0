//! Shared by the Lua crate's policy tests.
#![allow(dead_code)]

use petrel_smtp_server::ConnMeta;

/// A loopback client's connection as reception events see it.
pub fn conn() -> ConnMeta {
    ConnMeta {
        received_from: "127.0.0.1:5000".into(),
        received_via: "127.0.0.1:25".into(),
        hostname: "mx.test".into(),
        ehlo_domain: None,
        authn_id: None,
        tls: false,
    }
}
