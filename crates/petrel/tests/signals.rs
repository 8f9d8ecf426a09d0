//! `petrel serve` as a real process: SIGHUP and `petrel reload` reload the
//! policy (the generation goes up by one each), SIGTERM stops it cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn reload_generation(endpoint: &str) -> u64 {
    let out =
        Command::new(env!("CARGO_BIN_EXE_petrel")).args(["reload", "--json", "--endpoint", endpoint]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], true, "{v}");
    v["generation"].as_u64().unwrap()
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["serve", "--policy"])
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "petrel serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    // SIGHUP made generation 2, so this reload makes 3.
    assert_eq!(reload_generation(&endpoint), 3);
    assert_eq!(reload_generation(&endpoint), 4);
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the daemon cleanly: {status}");
}
