//! DKIM signing end to end: `policy-extras.dkim_sign` with a
//! `dkim_data.toml` in KumoMTA's format signs mail as it arrives, and every
//! signature of every message the sink receives verifies with two
//! independent verifiers (dkimpy and mail-auth), both fetching the public
//! keys from a real DNS server as TXT records.

use petrel_e2e::{DnsServer, Sink, TestDaemon, Workspace, Zone, eventually, send_each, smart_host_events};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Run `openssl` with `args`, panicking with its error output on failure.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed (make test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A new RSA-2048 key in `dir`; returns its path and the DNS record.
fn rsa_key(dir: &Path, name: &str, traditional: bool) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let mut args = vec!["genrsa", "-out", path.to_str().unwrap()];
    if traditional {
        // PKCS#1 ("BEGIN RSA PRIVATE KEY"), as older key tooling writes.
        args.insert(1, "-traditional");
    }
    args.push("2048");
    openssl(&args);
    let public = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout", "-outform", "DER"]);
    (path, format!("v=DKIM1; k=rsa; p={}", base64(&public)))
}

/// A new Ed25519 key (PKCS#8 PEM); the record carries the raw public key.
fn ed25519_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path.to_str().unwrap()]);
    let spki = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout", "-outform", "DER"]);
    (path, format!("v=DKIM1; k=ed25519; p={}", base64(&spki[spki.len() - 32..])))
}

/// dkimpy's verdict on each signature of each file: (d=, a=, ok).
fn dkimpy(dns_port: u16, files: &[PathBuf]) -> Vec<Vec<(String, String, bool)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dkim/verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dns_port.to_string())
        .args(files)
        .output()
        .expect("python3 with dkimpy (make test installs it)");
    assert!(out.status.success(), "verify.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["d"].as_str().unwrap().to_string(), r["a"].as_str().unwrap().to_string(), r["ok"] == true))
                .collect()
        })
        .collect()
}

/// mail-auth's verdict on each signature: (d=, passed).
async fn mail_auth(dns: &DnsServer, data: &[u8]) -> Vec<(String, bool)> {
    use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    let mut server = NameServerConfig::udp_and_tcp(dns.addr().ip());
    for connection in &mut server.connections {
        connection.port = dns.addr().port();
    }
    let authenticator =
        mail_auth::MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![server]), ResolverOpts::default())
            .unwrap();
    let message = mail_auth::AuthenticatedMessage::parse(data).expect("parses");
    let results = authenticator.verify_dkim(&message).await;
    results
        .iter()
        .map(|r| {
            let d = r.signature().map(|s| s.d.clone()).unwrap_or_default();
            (d, *r.result() == mail_auth::DkimResult::Pass)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mail_verifies_with_independent_verifiers() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    let (example_key, example_txt) = rsa_key(dir, "example", false);
    let (legacy_key, legacy_txt) = rsa_key(dir, "legacy", true);
    let (esp_key, esp_txt) = ed25519_key(dir, "esp");
    let dns = DnsServer::start(
        Zone::new()
            .txt("s2048._domainkey.example.com", &example_txt)
            .txt("old._domainkey.legacy.test", &legacy_txt)
            .txt("ed._domainkey.esp.test", &esp_txt),
    )
    .await;
    let data = dir.join("dkim_data.toml");
    std::fs::write(
        &data,
        format!(
            r#"
[base]
additional_signatures = ["ESP"]
selector = "s2048"
headers = ["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"]
over_sign = true

[domain."example.com"]
filename = "{example}"

[domain."legacy.test"]
selector = "old"
filename = "{legacy}"
header_canonicalization = "Simple"
body_canonicalization = "Simple"

[signature."ESP"]
domain = "esp.test"
selector = "ed"
algo = "ed25519"
policy = "Always"
filename = "{esp}"
"#,
            example = example_key.display(),
            legacy = legacy_key.display(),
            esp = esp_key.display()
        ),
    )
    .unwrap();
    let sink = Sink::start().await;
    let events = format!(
        "local dkim_sign = require 'policy-extras.dkim_sign'\n\
         local dkim_signer = dkim_sign:setup {{ '{}' }}\n\
         kumo.on('smtp_server_message_received', function(msg) dkim_signer(msg) end)\n{}",
        data.display(),
        smart_host_events(sink.addr(), "")
    );
    let policy = ws.policy("", &events);
    let daemon = TestDaemon::start(&policy).unwrap();
    let mut messages = Vec::new();
    for i in 0..4 {
        let from = if i % 2 == 0 { "news@example.com" } else { "alerts@legacy.test" };
        let body = format!(
            "From: Sender <{from}>\r\nTo: <r{i}@dest.test>\r\nSubject: signed {i}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{i}@example.com>\r\n\r\nline one of {i}\r\n\r\n  indented  line \r\n"
        );
        messages.push((from.to_string(), format!("r{i}@dest.test"), body));
    }
    // A sender with no domain block gets the ESP's signature only.
    messages.push((
        "x@unlisted.test".into(),
        "r9@dest.test".into(),
        "From: <x@unlisted.test>\r\nTo: <r9@dest.test>\r\nSubject: esp only\r\n\r\nbody\r\n".into(),
    ));
    let results = send_each(daemon.smtp[0], "127.0.0.1".parse().unwrap(), messages).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(eventually(Duration::from_secs(20), || sink.received_count() == 5).await, "all delivered");

    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (n, m) in sink.received().iter().enumerate() {
        let path = dir.join(format!("received-{n}.eml"));
        std::fs::write(&path, &m.data).unwrap();
        files.push(path);
        let domains: Vec<&str> = match m.recipients[0].as_str() {
            "r9@dest.test" => vec!["esp.test"],
            r if r.starts_with("r0") || r.starts_with("r2") => vec!["esp.test", "example.com"],
            _ => vec!["esp.test", "legacy.test"],
        };
        expected.push(domains);
        let verdicts = mail_auth(&dns, &m.data).await;
        let mut passed: Vec<&str> = verdicts.iter().filter(|(_, ok)| *ok).map(|(d, _)| d.as_str()).collect();
        passed.sort_unstable();
        assert_eq!(passed, expected[n], "mail-auth verdicts {verdicts:?} for\n{}", String::from_utf8_lossy(&m.data));
    }
    for (n, verdicts) in dkimpy(dns.addr().port(), &files).into_iter().enumerate() {
        let mut passed: Vec<&str> = verdicts.iter().filter(|(.., ok)| *ok).map(|(d, ..)| d.as_str()).collect();
        passed.sort_unstable();
        assert_eq!(passed, expected[n], "dkimpy verdicts {verdicts:?}");
        assert_eq!(verdicts.len(), expected[n].len(), "no extra signatures: {verdicts:?}");
        assert!(verdicts.iter().any(|(_, a, _)| a == "ed25519-sha256"), "the ESP's ed25519 signature");
    }
    // Over-signing: a second From added in transit breaks the signature.
    let first = sink.received().into_iter().find(|m| m.recipients[0] == "r0@dest.test").unwrap();
    let text = String::from_utf8(first.data.clone()).unwrap();
    let forged = text.replacen("From: Sender", "From: <evil@attacker.test>\r\nFrom: Sender", 1);
    let verdicts = mail_auth(&dns, forged.as_bytes()).await;
    assert!(verdicts.len() == 2 && verdicts.iter().all(|(_, ok)| !ok), "a forged From fails: {verdicts:?}");
    daemon.stop();
}
