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
    assert_eq!(foo.max_message_rate.map(|r| (r.limit, r.per)), Some((100, Duration::from_secs(1))));
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
