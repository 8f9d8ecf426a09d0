//! Shared by the tests that run the real `petrel` binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port the kernel just handed out (never a fixed one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `petrel serve --policy POLICY`, returned once `port` accepts connections.
pub fn serve(policy: &Path, port: u16, stderr: Stdio) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["serve", "--policy"])
        .arg(policy)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "petrel serve did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Send a signal (`-HUP`, `-TERM`, ...) to a child.
pub fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Write `dir/init.lua`: a spool and logs under `dir`, then `init` inside
/// the init event, then `events`.
pub fn policy(dir: &Path, init: &str, events: &str) -> std::path::PathBuf {
    let root = dir.display();
    let path = dir.join("init.lua");
    let text = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{root}/spool' }}\n  kumo.configure_local_logs {{ log_dir = '{root}/logs' }}\n{init}\nend)\n{events}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `get_queue_config` sending everything to `sink` as a smart host, with
/// the given extra fields.
pub fn smart_host(sink: std::net::SocketAddr, fields: &str) -> String {
    format!(
        "kumo.on('get_queue_config', function()\n  return kumo.make_queue_config {{ {fields} protocol = {{ smtp = {{ mx_list = {{ '{sink}' }} }} }} }}\nend)"
    )
}
