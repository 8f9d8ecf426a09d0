//! `petrel import-momentum` as an operator runs it: the real binary on an
//! ecelerity.conf, then `petrel validate` on what it wrote.

use std::process::Command;

fn petrel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn writes_a_policy_that_validates_and_lists_what_it_cannot_map() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ecelerity.conf");
    std::fs::write(
        &conf,
        "Gateway = smarthost.example\nRetry_Interval = 1200\nAdaptive_Enabled = true\nGenerate_Bounces = false\nDomain \"slow.example\" {\n  Generate_Delay_DSN = true\n  Delay_DSN_Retry_Interval = 7200\n}\nBinding \"cust\" {\n  Bind_Address = 10.0.0.5\n  EHLO_Hostname = mta.cust.example\n  Match_Domain = cust.example\n  Suspend_Delivery = true\n}\nesmtp_listener {\n  listen \":25\" { }\n}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let spool = dir.path().join("spool");
    let (ok, stdout, stderr) = petrel(&[
        "import-momentum",
        conf.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("line 3: adaptive_enabled in global"), "{stdout}");
    assert!(!stdout.contains("generate_") && !stdout.contains("delay_dsn"), "the DSN options are imported: {stdout}");
    assert!(
        stdout.contains(
            "line 13: Suspend_Delivery = true in binding \"cust\": after starting, run `petrel suspend-source cust`"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("line 15: esmtp_listener scope"), "{stdout}");
    let sources = std::fs::read_to_string(out.join("sources.toml")).unwrap();
    assert!(sources.contains("source_address = \"10.0.0.5\"") && sources.contains("mta.cust.example"), "{sources}");
    let init = std::fs::read_to_string(out.join("init.lua")).unwrap();
    assert!(init.contains("['cust.example'] = 'cust'"), "{init}");
    assert!(init.contains("routing_domain = 'smarthost.example'"), "Gateway becomes the routing domain: {init}");
    assert!(init.contains("--   line 3: adaptive_enabled"), "the policy lists it too");
    assert!(init.contains("generate_bounces = false"), "{init}");
    assert!(init.contains("generate_delay_dsn = true") && init.contains("delay_dsn_retry_interval = 7200"), "{init}");
    let policy = out.join("init.lua");
    let (ok, stdout, stderr) = petrel(&["validate", "--policy", policy.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ecelerity.conf");
    std::fs::write(&conf, "Binding \"x\" {\n  Bind_Address = 10.0.0.1\n").unwrap();
    let (ok, _, stderr) = petrel(&["import-momentum", conf.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("ecelerity.conf: line 1: binding scope is not closed"), "{stderr}");
}
