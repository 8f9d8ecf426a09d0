//! The shipped `policy-extras.shaping` helper resolving egress path
//! settings as KumoMTA documents: default, providers (matched by MX
//! suffix), MX-site blocks, domain blocks, source tables, replace_base.

use petrel_delivery::EgressPolicy;
use petrel_lua::PolicyEngine;
use petrel_smtp_client::TlsMode;
use std::sync::Arc;
use std::time::Duration;

const SHAPING: &str = r#"
["default"]
connection_limit = 10
max_deliveries_per_connection = 100
max_message_rate = "100/s"

[provider."google"]
match = [{ MXSuffix = ".google.test" }]
enable_tls = "Required"
max_deliveries_per_connection = 50

[provider."google".sources."ip-1"]
connection_limit = 2

["yahoo.test"]
max_deliveries_per_connection = 20

["foo.test"]
mx_rollup = false
max_deliveries_per_connection = 50
connection_limit = 3

["foo.test".sources."IP-1"]
max_deliveries_per_connection = 5

["replaced.test"]
replace_base = true
idle_timeout = "5s"
"#;

async fn engine() -> (PolicyEngine, petrel_testkit::DnsServer, tempfile::TempDir) {
    let zone = petrel_testkit::Zone::new()
        .mx("yahoo.test", 1, "mta5.am0.yahoodns.test")
        .mx("bar.test", 1, "mta5.am0.yahoodns.test")
        .mx("foo.test", 1, "mta5.am0.yahoodns.test");
    let dns = petrel_testkit::DnsServer::start(zone).await;
    let dir = tempfile::tempdir().unwrap();
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(&shaping, SHAPING).unwrap();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        format!(
            "local kumo = require 'kumo'\nlocal shaping = require 'policy-extras.shaping'\nkumo.on('init', function() kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }} end)\nkumo.on('get_egress_path_config', shaping:setup {{ '{}' }})\n",
            shaping.display()
        ),
    )
    .unwrap();
    let engine = PolicyEngine::load(&policy, "host.test").unwrap();
    engine.set_resolver(Arc::new(petrel_dns::HickoryResolver::with_name_servers(&[dns.addr()]).unwrap()));
    (engine, dns, dir)
}

#[tokio::test]
async fn shaping_resolves_in_kumomtas_documented_order() {
    let (engine, _dns, _dir) = engine().await;
    let yahoo_site = "mta5.am0.yahoodns.test";
    // The user guide's example: foo.test on IP-1.
    let foo = engine.egress_path_config("foo.test", "IP-1", yahoo_site).await.unwrap();
    assert_eq!((foo.connection_limit, foo.max_deliveries_per_connection), (3, 5));
    assert_eq!(foo.max_message_rate.map(|r| (r.limit, r.period)), Some((100, Duration::from_secs(1))));
    // Another domain on yahoo.test's MX site gets the site block.
    let bar = engine.egress_path_config("bar.test", "ip-2", yahoo_site).await.unwrap();
    assert_eq!((bar.connection_limit, bar.max_deliveries_per_connection), (10, 20));
    // A provider by MX suffix, and its source table.
    let gmail = engine.egress_path_config("gmail.test", "ip-1", "alt1.gmail-smtp-in.l.google.test").await.unwrap();
    assert_eq!((gmail.connection_limit, gmail.max_deliveries_per_connection), (2, 50));
    assert_eq!(gmail.enable_tls, TlsMode::Required);
    let not_google = engine.egress_path_config("mixed.test", "ip-1", "a.google.test,mx.other.test").await.unwrap();
    assert_eq!(not_google.enable_tls, TlsMode::Opportunistic, "every MX host must match the provider");
    // replace_base drops what default set.
    let replaced = engine.egress_path_config("replaced.test", "ip-1", "mx.replaced.test").await.unwrap();
    assert_eq!(replaced.connection_limit, petrel_delivery::EgressPathConfig::default().connection_limit);
    assert_eq!(replaced.idle_timeout, Duration::from_secs(5));
}

#[test]
fn shaping_data_errors_and_what_petrel_lacks_fail_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[\"x.test\"]\nconnection_limt = 3\n", "unknown field `connection_limt`"),
        ("[provider.p]\nmatch = []\nprovider_connection_limit = 5\n", "provider_connection_limit"),
        ("[\"x.test\"]\nconsecutive_connection_failures_before_delay = 5\n", "not supported by Petrel"),
    ];
    for (data, needle) in cases {
        let shaping = dir.path().join("shaping.toml");
        std::fs::write(&shaping, data).unwrap();
        let policy = dir.path().join("init.lua");
        std::fs::write(
            &policy,
            format!(
                "local kumo = require 'kumo'\nlocal shaping = require 'policy-extras.shaping'\nlocal get = shaping:setup {{ '{}' }}\nkumo.on('init', function() kumo.define_spool {{ name = 'data', path = '/tmp/x' }} end)\n",
                shaping.display()
            ),
        )
        .unwrap();
        let err = PolicyEngine::load(&policy, "h").err().expect("refused").to_string();
        assert!(err.contains("init.lua:3") && err.contains("shaping.toml") && err.contains(needle), "{err}");
    }
}

#[tokio::test]
async fn rollup_reroutes_by_mx_suffix_and_rolls_up_by_ip() {
    use petrel_message::{EnvelopeAddress, Message};
    use petrel_queue::{QueueKey, QueuePolicy};
    use petrel_smtp_server::SessionPolicy;
    let zone = petrel_testkit::Zone::new()
        .mx("hotmail.test", 2, "hotmail-test.olc.protection.outlook.test")
        .mx("mixed.test", 1, "a.olc.protection.outlook.test")
        .mx("mixed.test", 2, "b.other.test")
        .mx("foo.test", 1, "foo-test.mail.protection.outlook.test")
        .mx("foo.test", 5, "backup.foo.test")
        .addr("foo-test.mail.protection.outlook.test", "127.0.0.22".parse().unwrap())
        .addr("foo-test.mail.protection.outlook.test", "127.0.0.21".parse().unwrap());
    let dns = petrel_testkit::DnsServer::start(zone).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        r#"local kumo = require 'kumo'
local rollup = require 'policy-extras.rollup'
kumo.on('init', function() kumo.define_spool { name = 'data', path = '/tmp/petrel-never-opened' } end)
kumo.on('smtp_server_message_received', function(msg)
  rollup.reroute_based_on_mx_host_suffix(msg, { ['.olc.protection.outlook.test.'] = 'outlook.test' })
  rollup.reroute_using_ip_rollup(msg, { ['.mail.protection.outlook.test.'] = 'outlook.ip_rollup' })
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local params = {}
  rollup.apply_ip_rollup_to_queue_config(domain, routing_domain, params)
  return kumo.make_queue_config(params)
end)
"#,
    )
    .unwrap();
    let engine = PolicyEngine::load(&policy, "host.test").unwrap();
    engine.set_resolver(Arc::new(petrel_dns::HickoryResolver::with_name_servers(&[dns.addr()]).unwrap()));
    let conn = petrel_smtp_server::ConnMeta {
        received_from: "127.0.0.1:5000".into(),
        received_via: "127.0.0.1:25".into(),
        hostname: "mx.test".into(),
        ehlo_domain: None,
        authn_id: None,
        tls: false,
    };
    let routed = |domain: &str| {
        let sender = EnvelopeAddress::parse("s@sender.test").unwrap();
        let recipient = EnvelopeAddress::parse(&format!("user@{domain}")).unwrap();
        Message::new(sender, recipient, Arc::from(&b"Subject: x\r\n\r\nx\r\n"[..]))
    };
    let mut hotmail = routed("hotmail.test");
    engine.message_received(&mut hotmail, &conn).await.unwrap();
    assert_eq!(hotmail.meta_str("routing_domain"), Some("outlook.test"));
    assert_eq!(hotmail.queue_name(), "hotmail.test!outlook.test");
    let mut mixed = routed("mixed.test");
    engine.message_received(&mut mixed, &conn).await.unwrap();
    assert_eq!(mixed.meta_str("routing_domain"), None, "every MX host must match");
    let mut foo = routed("foo.test");
    engine.message_received(&mut foo, &conn).await.unwrap();
    assert_eq!(foo.meta_str("routing_domain"), Some("outlook.ip_rollup"));
    let key = QueueKey::of(&foo);
    let protocol = engine.queue_config(&key).await.unwrap().protocol;
    assert_eq!(protocol.mx_list(), Some(&vec!["[127.0.0.21]".into(), "[127.0.0.22]".into()]));
}
