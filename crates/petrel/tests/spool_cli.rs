//! A damaged spool as an operator meets it: `serve` refuses it and says
//! what to run, `spool check` names what is lost, `spool repair` salvages
//! the rest into a spool `serve` starts on.

use petrel_message::{EnvelopeAddress, Message};
use petrel_spool::{RocksSpool, Spool, SpoolPaths};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

fn petrel(args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petrel")).args(args).arg("--policy").arg(policy).output().unwrap()
}

fn policy(dir: &Path, spool: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("init-{}.lua", spool.file_name().unwrap().to_string_lossy()));
    let text = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}' }}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0' }}\nend)\n",
        spool.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_damaged_wal_is_refused_by_serve_and_salvaged_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    {
        let spool = RocksSpool::open(&SpoolPaths { meta: spool_dir.clone(), data: spool_dir.clone() }).unwrap();
        for n in 0..30 {
            let body = format!("Subject: {n}\r\n\r\n{}\r\n", "z".repeat(2000));
            let rcpt = EnvelopeAddress::parse(&format!("r{n}@b.example")).unwrap();
            let m = Message::new(EnvelopeAddress::parse("s@a.example").unwrap(), rcpt, Arc::from(body.into_bytes()));
            spool.store(&[m]).await.unwrap();
        }
    }
    let wal = std::fs::read_dir(&spool_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "log") && std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 32].fill(0x5a);
    std::fs::write(&wal, bytes).unwrap();
    let damaged = policy(dir.path(), &spool_dir);

    let serve = petrel(&["serve"], &damaged);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success());
    assert!(stderr.contains("damaged") && stderr.contains("petrel spool repair"), "{stderr}");

    let check = petrel(&["spool", "check"], &damaged);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("lost: "), "the lost id is named:\n{stdout}");

    let fresh = dir.path().join("fresh");
    let repair = petrel(&["spool", "repair", "--into", fresh.to_str().unwrap()], &damaged);
    let stdout = String::from_utf8_lossy(&repair.stdout);
    assert!(repair.status.success(), "{stdout}{}", String::from_utf8_lossy(&repair.stderr));
    assert!(fresh.with_extension("quarantine").join("lost-ids.txt").exists());

    let check = petrel(&["spool", "check"], &policy(dir.path(), &fresh));
    assert!(check.status.success(), "the salvaged spool is whole: {}", String::from_utf8_lossy(&check.stdout));
}
