//! docs/kumomta-compat.md is generated from tools/kumomta_status.toml; this
//! keeps that file true: what it marks supported or partial exists in the
//! `kumo` module a policy sees, and everything the module has of KumoMTA's
//! reference is marked so. Events likewise against what Petrel raises.

use petrel_lua::{PolicyEngine, kumomta_functions, raised_events};
use petrel_queue::{QueueKey, QueuePolicy};

fn status() -> toml::Table {
    let text = include_str!("../../../tools/kumomta_status.toml");
    text.parse::<toml::Table>().unwrap()["status"].as_table().unwrap().clone()
}

fn implemented(entry: Option<&toml::Value>) -> bool {
    entry.and_then(|e| e.get("status")).and_then(|s| s.as_str()).is_some_and(|s| s == "supported" || s == "partial")
}

/// The documented names a loaded policy's `kumo` module really has.
async fn present(names: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let policy = format!(
        r#"local kumo = require 'kumo'
local NAMES = {{ {} }}
local function has(name)
  local t = kumo
  local parts = kumo.string.split(name, '.')
  for i = 2, #parts - 1 do
    t = rawget(t, parts[i])
    if type(t) ~= 'table' then return false end
  end
  return rawget(t, parts[#parts]) ~= nil
end
kumo.on('init', function() kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }} end)
kumo.on('get_queue_config', function()
  local found = {{}}
  for _, name in ipairs(NAMES) do
    if has(name) then table.insert(found, name) end
  end
  return kumo.make_queue_config {{ egress_pool = table.concat(found, ' ') }}
end)
"#,
        list.join(", ")
    );
    let path = dir.path().join("init.lua");
    std::fs::write(&path, policy).unwrap();
    let engine = PolicyEngine::load(&path, "host.test").unwrap();
    let key = QueueKey { domain: "x.test".into(), tenant: None, campaign: None, routing_domain: None };
    let config = engine.queue_config(&key).await.unwrap();
    config.egress_pool.unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[tokio::test]
async fn the_status_file_matches_what_the_kumo_module_has() {
    let status = status();
    let names: Vec<String> =
        kumomta_functions().iter().flat_map(|(m, fs)| fs.iter().map(move |f| format!("{m}.{f}"))).collect();
    let has = present(&names).await;
    assert!(has.len() > 50, "the probe sees the module: {has:?}");
    let mut wrong = Vec::new();
    for name in &names {
        let there = has.contains(name);
        if there != implemented(status.get(name)) {
            wrong.push(format!("{name}: in the kumo module: {there}; status file says {:?}", status.get(name)));
        }
    }
    for (name, entry) in &status {
        if let Some(event) = name.strip_prefix("events.") {
            if implemented(Some(entry)) != raised_events().contains(&event) {
                wrong.push(format!("{name}: raised: {}; status file says {entry:?}", raised_events().contains(&event)));
            }
        } else if !name.starts_with("message.") && !names.contains(name) {
            wrong.push(format!("{name} is not in KumoMTA's reference"));
        }
    }
    assert!(wrong.is_empty(), "tools/kumomta_status.toml is out of date:\n{}", wrong.join("\n"));
}
