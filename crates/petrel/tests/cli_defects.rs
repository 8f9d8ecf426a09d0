//! The command line behaving like a Unix tool: a closed pipe ends it
//! quietly, a spool in use is named, logs are plain text off a terminal.

mod common;

use common::{free_port, serve, signal};
use std::process::{Command, Stdio};

fn policy(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("init.lua");
    let text = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\n  kumo.start_http_listener {{ listen = '127.0.0.1:{port}' }}\n  kumo.define_egress_source {{ name = 's1', source_address = '127.0.0.2' }}\n  kumo.define_egress_source {{ name = 's2', source_address = '127.0.0.3' }}\nend)\n",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), free_port());
    // Far more output than a pipe buffers, so writes go on after `head` left.
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text = text.replace(
        "end)\n",
        "  for i = 1, 3000 do kumo.define_egress_source { name = 'many-' .. i, source_address = '127.0.0.2' } end\nend)\n",
    );
    std::fs::write(&policy, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_petrel");
    let script = format!("'{bin}' validate --policy '{}' | head -n 1 >/dev/null", policy.display());
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_second_daemon_on_the_same_spool_says_which_spool_is_in_use_and_logs_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let policy = policy(dir.path(), port);
    let mut first = serve(&policy, port, Stdio::null());
    // Same spool, another HTTP port.
    let other = dir.path().join("second.lua");
    let text = std::fs::read_to_string(&policy).unwrap().replace(&port.to_string(), &free_port().to_string());
    std::fs::write(&other, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["serve", "--policy"]).arg(&other).output().unwrap();
    signal(&first, "-TERM");
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by process") && stderr.contains("spool"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes when stderr is not a terminal: {stderr:?}");
}
