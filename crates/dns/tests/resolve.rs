//! MX planning against a real DNS server on loopback.

use petrel_dns::{DnsError, HickoryResolver, Resolver};
use petrel_testkit::{DnsServer, Zone};

async fn server() -> (DnsServer, HickoryResolver) {
    let zone = Zone::new()
        .mx("two.test", 20, "backup.two.test")
        .mx("two.test", 10, "primary.two.test")
        .addr("primary.two.test", "127.0.0.1".parse().unwrap())
        .addr("backup.two.test", "::1".parse().unwrap())
        .addr("bare.test", "127.0.0.5".parse().unwrap())
        .null_mx("nullmx.test")
        .servfail("broken.test")
        .ttl(1)
        .mx("short.test", 10, "primary.two.test");
    let dns = DnsServer::start(zone).await;
    let resolver = HickoryResolver::with_name_servers(&[dns.addr()]).unwrap();
    (dns, resolver)
}

#[tokio::test]
async fn mx_plans_follow_the_rfcs() {
    let (_dns, r) = server().await;
    let plan = r.resolve_mx("two.test").await.unwrap();
    assert_eq!(plan.attempt_order(), ["primary.two.test", "backup.two.test"]);
    assert_eq!(plan.site(), "backup.two.test,primary.two.test");
    assert!(!plan.implicit);

    let bare = r.resolve_mx("bare.test").await.unwrap();
    assert!(bare.implicit);
    assert_eq!(bare.attempt_order(), ["bare.test"]);

    let null = r.resolve_mx("nullmx.test").await.unwrap_err();
    assert_eq!(null, DnsError::NullMx("nullmx.test".into()));
    assert!(null.is_permanent());
    let nx = r.resolve_mx("missing.test").await.unwrap_err();
    assert_eq!(nx, DnsError::NxDomain("missing.test".into()));
    assert!(nx.is_permanent());
    let fail = r.resolve_mx("broken.test").await.unwrap_err();
    assert!(!fail.is_permanent(), "{fail}");

    assert_eq!(r.resolve_ip("backup.two.test").await.unwrap(), vec!["::1".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(r.resolve_ip("10.1.2.3").await.unwrap(), vec!["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]);
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let (dns, r) = server().await;
    r.resolve_mx("two.test").await.unwrap();
    let after_first = dns.queries();
    r.resolve_mx("two.test").await.unwrap();
    assert_eq!(dns.queries(), after_first, "a second lookup within the TTL is served from cache");

    r.resolve_mx("short.test").await.unwrap();
    let before = dns.queries();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    r.resolve_mx("short.test").await.unwrap();
    assert!(dns.queries() > before, "an expired answer is asked again");
}
