//! `petrel serve` as a real process: SIGHUP and `petrel reload` reload the
//! policy (the generation goes up by one each), SIGTERM stops it cleanly.

mod common;

use common::{free_port, serve, signal};
use std::process::{Command, Stdio};
use std::time::Duration;

fn reload_outcome(endpoint: &str) -> serde_json::Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_petrel")).args(["reload", "--json", "--endpoint", endpoint]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], true, "{v}");
    v
}

fn reload_generation(endpoint: &str) -> u64 {
    reload_outcome(endpoint)["generation"].as_u64().unwrap()
}

/// An edit that changes the policy's bytes but not what it does.
fn edit(policy: &std::path::Path, n: usize) {
    let mut text = std::fs::read_to_string(policy).unwrap();
    text.push_str(&format!("-- edit {n}\n"));
    std::fs::write(policy, text).unwrap();
}

#[test]
fn sighup_and_petrel_reload_both_reload() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        format!(
            "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\n  kumo.start_http_listener {{ listen = '127.0.0.1:{port}' }}\nend)\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = serve(&policy, port, Stdio::null());
    let endpoint = format!("http://127.0.0.1:{port}");
    edit(&policy, 1);
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    // SIGHUP made generation 2, so this reload makes 3.
    edit(&policy, 2);
    assert_eq!(reload_generation(&endpoint), 3);
    edit(&policy, 3);
    assert_eq!(reload_generation(&endpoint), 4);
    // Nothing changed since: a reload is a no-op that says so.
    let same = reload_outcome(&endpoint);
    assert_eq!((same["unchanged"].as_bool(), same["generation"].as_u64()), (Some(true), Some(4)), "{same}");
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the daemon cleanly: {status}");
}

#[test]
fn a_lua_error_at_reception_defers_and_is_logged_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        format!(
            "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}' }}\nend)\nkumo.on('smtp_server_message_received', function(msg)\n  local broken = nil\n  return broken.field\nend)\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = serve(&policy, port, Stdio::piped());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"EHLO t\r\nMAIL FROM:<a@s.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 2048];
    while !seen.contains("354") {
        let n = stream.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    stream.write_all(b"Subject: x\r\n\r\nx\r\n.\r\n").unwrap();
    let n = stream.read(&mut buf).unwrap();
    let verdict = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(verdict.starts_with("451 4.3.0"), "{verdict}");
    signal(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("init.lua:8:"), "the error names the policy line:\n{log}");
    assert!(log.contains("attempt to index"), "{log}");
    // That nothing was spooled is shown end to end in tests/e2e/policy_errors.rs.
}
