//! `petrel validate` as an operator runs it: the real binary on policy files.

use std::process::Command;

fn validate(init_body: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.lua");
    let policy = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\n{init_body}\nend)\n",
        dir.path().display()
    );
    std::fs::write(&path, policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["validate", "--policy"]).arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_valid_policy_prints_its_sources_and_pools() {
    let (ok, stdout, _) = validate(
        "  kumo.define_egress_source { name = 'ip-1', source_address = '127.0.0.2', ehlo_domain = 'mta1.test' }\n  kumo.define_egress_pool { name = 'pool-1', entries = { { name = 'ip-1', weight = 3 }, { name = 'default', weight = 1 } } }",
    );
    assert!(ok);
    for needle in ["ip-1", "127.0.0.2", "mta1.test", "pool-1", "75.0%", "25.0%", "(system default)"] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
}

#[test]
fn each_broken_registry_fails_with_file_and_line() {
    let cases = [
        ("  kumo.define_egress_pool { name = 'p', entries = { { name = 'nope' } } }", 4, "unknown source"),
        ("  kumo.define_egress_source { name = 'x' }\n  kumo.define_egress_source { name = 'x' }", 5, "defined twice"),
        ("  kumo.define_egress_pool { name = 'p p', entries = { { name = 'default' } } }", 4, "invalid pool name"),
        ("  kumo.define_egress_source { name = 'x:1' }", 4, "invalid source name"),
        ("  kumo.define_egress_source { name = 'x', source_address = 'not-an-ip' }", 4, "invalid source_address"),
        (
            "  kumo.define_egress_pool { name = 'p', entries = { { name = 'default', weight = -2 } } }",
            4,
            "negative weight",
        ),
        (
            "  kumo.define_egress_pool { name = 'p', entries = { { name = 'default', weight = 0 } } }",
            4,
            "no usable entry",
        ),
    ];
    for (body, line, needle) in cases {
        let (ok, _, stderr) = validate(body);
        assert!(!ok, "accepted:\n{body}");
        assert!(stderr.contains(&format!("init.lua:{line}:")), "no file:line in {stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

#[test]
fn serve_refuses_to_start_on_a_broken_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.lua");
    std::fs::write(&path, "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_egress_pool { name = 'p', entries = { { name = 'nope' } } }\nend)\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["serve", "--policy"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("init.lua:3:"), "{stderr}");
}

/// `validate` on a policy whose init is valid and whose `events` follow.
fn validate_events(events: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.lua");
    let policy = format!(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\nend)\n{events}\n",
        dir.path().display()
    );
    std::fs::write(&path, policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["validate", "--policy"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_misspelt_or_unraised_event_is_an_error_with_its_line() {
    let (ok, stderr) = validate_events("kumo.on('smtp_server_mesage_received', function(msg) end)", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("init.lua:5:") && stderr.contains("did you mean \"smtp_server_message_received\""),
        "{stderr}"
    );
    let (ok, stderr) = validate_events("kumo.on('smtp_server_data', function(msg) end)", &[]);
    assert!(!ok);
    assert!(stderr.contains("init.lua:5:") && stderr.contains("does not raise"), "{stderr}");
}

#[test]
fn config_events_are_tried_with_sample_domains() {
    let typo =
        "kumo.on('get_queue_config', function(domain)\n  return kumo.make_queue_config { retry_intervl = '1m' }\nend)";
    let (ok, stderr) = validate_events(typo, &[]);
    assert!(!ok, "a typo inside make_queue_config is caught before the first message");
    assert!(stderr.contains("init.lua:6:") && stderr.contains("retry_intervl"), "{stderr}");

    let only_some = "kumo.on('get_egress_path_config', function(domain, source, site)\n  if domain == 'broken.example' then return nil + 1 end\nend)";
    let (ok, _) = validate_events(only_some, &[]);
    assert!(ok, "fine for example.com");
    let (ok, stderr) = validate_events(only_some, &["--sample-domain", "broken.example"]);
    assert!(!ok);
    assert!(stderr.contains("init.lua:6:") && stderr.contains("broken.example"), "{stderr}");
}

#[test]
fn validate_runs_the_helpers_deep_checks() {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        "[source.\"ip-1\"]\nsource_address = \"127.0.0.2\"\n[pool.\"p\".\"ip-1\"]\n[pool.\"p\".\"ghost\"]\n",
    )
    .unwrap();
    let path = dir.path().join("init.lua");
    let policy = format!(
        "local kumo = require 'kumo'\nlocal sources = require 'policy-extras.sources'\nsources:setup {{ '{}' }}\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\nend)\n",
        sources.display(),
        dir.path().display()
    );
    std::fs::write(&path, policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["validate", "--policy"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a pool naming an undefined source fails validation");
    // Without the broken pool, the helper's sources and pools are listed.
    std::fs::write(&sources, "[source.\"ip-1\"]\nsource_address = \"127.0.0.2\"\n[pool.\"p\".\"ip-1\"]\nweight = 3\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["validate", "--policy"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["ip-1", "127.0.0.2", "get_egress_source", "get_egress_pool", "built-in"] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    assert!(stderr.contains("sources.toml") && stderr.contains("pool.\"p\" names source \"ghost\""), "{stderr}");
}

/// `petrel validate` loads every key a `dkim_data.toml` names: a missing
/// file and a file that holds no private key each fail, naming the file.
#[test]
fn a_wrong_dkim_key_file_fails_validate_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").unwrap();
    let missing = dir.path().join("missing.key");
    let good = dir.path().join("good.key");
    let out = Command::new("openssl").args(["genrsa", "-out"]).arg(&good).arg("2048").output().unwrap();
    assert!(out.status.success(), "openssl genrsa");
    let data = dir.path().join("dkim_data.toml");
    let write_data = |key: &std::path::Path| {
        std::fs::write(
            &data,
            format!(
                "[base]\nselector = 's1'\nheaders = ['From', 'Subject']\n\n[domain.\"example.com\"]\nfilename = '{}'\n",
                key.display()
            ),
        )
        .unwrap();
    };
    let path = dir.path().join("init.lua");
    std::fs::write(
        &path,
        format!(
            "local kumo = require 'kumo'\nlocal dkim_sign = require 'policy-extras.dkim_sign'\nlocal signer = dkim_sign:setup {{ '{}' }}\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\nend)\nkumo.on('smtp_server_message_received', function(msg) signer(msg) end)\n",
            data.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let run = || {
        let out =
            Command::new(env!("CARGO_BIN_EXE_petrel")).args(["validate", "--policy"]).arg(&path).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    for (key, needle) in [(&missing, "missing.key"), (&garbage, "garbage.key")] {
        write_data(key);
        let (ok, stderr) = run();
        assert!(!ok, "validate accepted {key:?}");
        assert!(stderr.contains(needle) && stderr.contains("[domain.\"example.com\"]"), "{stderr}");
    }
    write_data(&good);
    let (ok, stderr) = run();
    assert!(ok, "a usable key validates: {stderr}");
}

/// `petrel validate` lists what the policy sets up around delivery.
#[test]
fn validate_lists_the_classifier_hooks_automation_and_warmup() {
    let dir = tempfile::tempdir().unwrap();
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(
        &shaping,
        "[[\"gmail.com\".automation]]\nregex = \"421\"\naction = \"Suspend\"\nduration = \"1h\"\n",
    )
    .unwrap();
    let path = dir.path().join("init.lua");
    std::fs::write(
        &path,
        format!(
            "local kumo = require 'kumo'\nlocal shaper = require('policy-extras.shaping'):setup_with_automation {{ extra_files = {{ '{}' }} }}\nkumo.on('init', function()\n  kumo.define_spool {{ name = 'data', path = '{}/spool' }}\n  kumo.configure_bounce_classifier {{ files = {{ '[petrel]/bounce_classifier/default.toml' }} }}\n  kumo.configure_log_hook {{ name = 'webhook', headers = {{ 'Subject' }} }}\n  kumo.define_egress_source {{ name = 'new-ip', warmup = {{ start = '2026-12-01', daily = {{ 50, 100 }} }} }}\n  shaper.setup_publish()\n  kumo.configure_redis_throttles {{ node = 'redis://127.0.0.1:6379', node_count = 2, pool_size = 4 }}\nend)\n",
            shaping.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_petrel")).args(["validate", "--policy"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "Bounce classifier: [petrel]/bounce_classifier/default.toml",
        "Log hook: webhook (headers: Subject)",
        "Shaping automation: 1 rule(s): gmail.com#1",
        "Warm-up: new-ip from 2026-12-01, 2 day(s): [50, 100]",
        "Shared limits: redis redis://127.0.0.1:6379 (2 node(s) share them; each uses 1/2 of a limit",
        "note: pool_size has no effect",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
}
