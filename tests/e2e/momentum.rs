//! A Momentum configuration brought over with `petrel import-momentum`:
//! two customers bound by `Match_Domain`, a `default` binding_group, a
//! global gateway and an LMTP gateway for one domain. The sinks check each
//! message left from the binding Momentum would have used.

use petrel::momentum::{Targets, convert, parse};
use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, send_each};
use std::collections::HashMap;
use std::time::Duration;

fn conf(smtp_port: u16, lmtp_port: u16) -> String {
    format!(
        r#"# Two customers on their own IPs, everything else on a shared group.
Gateway = 127.0.0.1
Remote_SMTP_Port = {smtp_port}
Retry_Interval = 60
Message_Expiration = 86400
TLS = no
Max_Recipients_Per_Batch = 1

Binding "customer-a" {{
  Bind_Address = 127.0.0.2
  EHLO_Hostname = a.mta.test
  Match_Domain = a.example
  Max_Outbound_Connections = 2
}}

Binding "customer-b" {{
  Bind_Address = 127.0.0.3
  EHLO_Hostname = "b.mta.test"
  Match_Domain = b.example
}}

binding_group "default" {{
  EHLO_Hostname = shared.mta.test
  binding "shared-1" {{ Bind_Address = 127.0.0.4 }}
  binding "shared-2" {{
    Bind_Address = 127.0.0.5
  }}
}}

Domain lmtp.example {{
  Gateway = 127.0.0.10
  Delivery_Method = LMTP
  LMTP_Port = {lmtp_port}
}}

Domain other.example {{
  Adaptive_Enabled = true
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_momentum_config_sends_each_customer_from_its_binding() {
    let smtp = Sink::start().await;
    let lmtp =
        Sink::start_at("127.0.0.10:0".parse().unwrap(), std::sync::Arc::new(|_, _| (250, "2.0.0 ok".into()))).await;
    let ws = Workspace::new();
    let dir = ws.logs().parent().unwrap().to_path_buf();
    let root = parse(&conf(smtp.addr().port(), lmtp.addr().port())).unwrap();
    let targets = Targets {
        listen: "127.0.0.1:0".into(),
        spool: dir.join("spool").display().to_string(),
        logs: ws.logs().display().to_string(),
        sources_path: dir.join("sources.toml").display().to_string(),
        origin: "ecelerity.conf".into(),
    };
    let imported = convert(&root, &targets);
    assert_eq!(imported.unmapped.len(), 1, "{:?}", imported.unmapped);
    assert!(imported.unmapped[0].contains("adaptive_enabled"), "{:?}", imported.unmapped);
    std::fs::write(dir.join("sources.toml"), &imported.sources_toml).unwrap();
    std::fs::write(dir.join("init.lua"), &imported.init_lua).unwrap();
    let daemon = TestDaemon::start(&dir.join("init.lua")).unwrap_or_else(|e| panic!("{e}\n{}", imported.init_lua));

    let localhost = "127.0.0.1".parse().unwrap();
    let mut batch = Vec::new();
    let body = |from: &str, to: &str| {
        (from.to_string(), to.to_string(), format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: import\r\n\r\nhi\r\n"))
    };
    for i in 0..4 {
        batch.push(body("news@a.example", &format!("a{i}@dest.example")));
        batch.push(body("news@b.example", &format!("b{i}@dest.example")));
        batch.push(body("promo@other.sender", &format!("s{i}@dest.example")));
    }
    batch.push(body("news@a.example", "box@lmtp.example"));
    let results = send_each(daemon.smtp[0], localhost, batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        eventually(Duration::from_secs(20), || smtp.received_count() == 12 && lmtp.received_count() == 1).await,
        "smtp {} lmtp {}\n{}\n{:?}",
        smtp.received_count(),
        lmtp.received_count(),
        imported.init_lua,
        ws.records()
            .iter()
            .filter(|r| r.recipient.contains("lmtp"))
            .map(|r| (r.kind, r.site.clone(), r.response.clone()))
            .collect::<Vec<_>>()
    );

    let mut shared: HashMap<String, usize> = HashMap::new();
    for m in smtp.received() {
        let (ip, ehlo) = (m.peer.ip().to_string(), m.ehlo.clone());
        match m.sender.as_str() {
            "news@a.example" => assert_eq!((ip.as_str(), ehlo.as_str()), ("127.0.0.2", "a.mta.test")),
            "news@b.example" => assert_eq!((ip.as_str(), ehlo.as_str()), ("127.0.0.3", "b.mta.test")),
            _ => {
                assert_eq!(ehlo, "shared.mta.test", "the group's EHLO_Hostname is inherited");
                *shared.entry(ip).or_default() += 1;
            }
        }
    }
    assert_eq!((shared["127.0.0.4"], shared["127.0.0.5"]), (2, 2), "{shared:?}");
    let via_lmtp = &lmtp.received()[0];
    assert_eq!(via_lmtp.peer.ip().to_string(), "127.0.0.2", "Match_Domain still picks the binding");
    assert_eq!(lmtp.lmtp_sessions(), 1, "Delivery_Method = LMTP");
    daemon.stop();
}
