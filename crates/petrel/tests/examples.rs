//! The shipped policy and every example validate, and the egress-pools
//! example does what its README says (on ports the kernel picks, since
//! tests never use fixed ones).

mod common;

use common::{free_port, signal};
use petrel_testkit::{Sink, eventually};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn policies() -> Vec<PathBuf> {
    let mut found = vec![repo().join("policy/init.lua")];
    for entry in std::fs::read_dir(repo().join("examples")).unwrap().flatten() {
        let policy = entry.path().join("init.lua");
        if policy.exists() {
            found.push(policy);
        }
    }
    found
}

#[test]
fn the_shipped_policy_and_every_example_validate() {
    let policies = policies();
    assert!(policies.len() >= 2, "{policies:?}");
    for policy in policies {
        let out = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["validate", "--policy"])
            .arg(&policy)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}:\n{}", policy.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_pools_example_splits_mail_as_its_readme_says() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/egress-pools");
    let smtp_port = free_port();
    let http_port = free_port();
    let policy = std::fs::read_to_string(example.join("init.lua"))
        .unwrap()
        .replace("127.0.0.1:2025", &format!("127.0.0.1:{smtp_port}"))
        .replace("127.0.0.1:2526", &sink.addr().to_string())
        .replace(
            "kumo.start_esmtp_listener",
            &format!("kumo.start_http_listener {{ listen = '127.0.0.1:{http_port}' }}\n  kumo.start_esmtp_listener"),
        );
    std::fs::write(dir.path().join("init.lua"), policy).unwrap();
    let send = std::fs::read_to_string(example.join("send.py")).unwrap().replace("2025", &smtp_port.to_string());
    std::fs::write(dir.path().join("send.py"), send).unwrap();

    // `make run POLICY=examples/egress-pools/init.lua`, from the directory
    // the policy's relative data paths are under.
    let mut child = Guard(
        Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["serve", "--policy", "init.lua"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(smtp_port);
    for (sender, count) in
        [("news@customer-a.example", "5"), ("news@customer-b.example", "5"), ("promo@anyone.example", "40")]
    {
        let out =
            Command::new("python3").arg("send.py").args([sender, count]).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(eventually(Duration::from_secs(30), || sink.received_count() == 50).await, "got {}", sink.received_count());
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for m in sink.received() {
        *tally.entry(format!("{} ({})", m.peer.ip(), m.ehlo)).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [
        ("127.0.0.2 (mta-a1.example.net)", 5),
        ("127.0.0.3 (mta-b1.example.net)", 5),
        ("127.0.0.4 (mta-s1.example.net)", 10),
        ("127.0.0.5 (mta-s2.example.net)", 30),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(tally, expected, "the tally the README shows");
    signal(&child.0, "-TERM");
    assert!(child.0.wait().unwrap().success());
}

fn wait_for(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "petrel serve did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the daemon if the test fails before stopping it.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
