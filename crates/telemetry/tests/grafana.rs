//! The Grafana dashboard shipped in docs/ queries only metrics Petrel
//! exports, under the names it exports them.

use petrel_telemetry::Metrics;

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Give every labelled metric one series, so each is rendered.
    let m = Metrics::new();
    m.count("Delivery", Some("pool"), Some("ip-1"));
    let _guard = m.connection_opened("ip-1");
    m.count_classified("Bounce", "InvalidRecipient", "ip-1", "site");
    m.count_automation("rule#1", "Suspend");
    m.source_unhealthy.with_label_values(&["ip-1"]).set(0);
    drop(m.lua_histogram("init").start_timer());
    let exported = m.render();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        let names = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("petrel_"));
        for name in names {
            assert!(
                exported.contains(&format!("\n{name}")) || exported.starts_with(name),
                "{name} in {expr:?} is not exported"
            );
        }
    }
}
