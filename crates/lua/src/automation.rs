//! `kumo.configure_shaping_automation { rules = {...} }`: Petrel's hand-off
//! of the shaping files' automation rules (which `policy-extras.shaping`'s
//! `setup_with_automation` reads) to the in-process automation. Each rule:
//! `{ name, domain = 'gmail.com' | provider = { {MXSuffix = '...'}, ... },
//! regex = '...' | {...}, action = 'Suspend' | 'SuspendTenant' |
//! 'SuspendCampaign', duration = '2 hours', trigger = 'Immediate' |
//! { Threshold = '2/hr' } }`.

use crate::specs::DurationSpec;
use mlua::{Lua, LuaSerdeExt, Value};
use petrel_delivery::automation::{Action, AutomationRule, ProviderMatch, Scope, Trigger, parse_threshold};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutomationSpec {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ActionSpec {
    Named(String),
    Table(std::collections::BTreeMap<String, serde_json::Value>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TriggerSpec {
    Named(String),
    Threshold {
        #[serde(rename = "Threshold")]
        threshold: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    #[serde(rename = "DomainSuffix")]
    domain_suffix: Option<String>,
    #[serde(rename = "MXSuffix")]
    mx_suffix: Option<String>,
    #[serde(rename = "HostName")]
    host_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    domain: Option<String>,
    provider: Option<Vec<MatchSpec>>,
    regex: OneOrMany,
    action: ActionSpec,
    duration: DurationSpec,
    trigger: Option<TriggerSpec>,
}

fn rule(spec: RuleSpec) -> Result<AutomationRule, String> {
    let name = spec.name;
    let at = |e: String| format!("{name}: {e}");
    let scope = match (spec.domain, spec.provider) {
        (Some(d), None) => Scope::Domain(d),
        (None, Some(list)) => Scope::Provider(
            list.into_iter()
                .flat_map(|m| {
                    let d = m.domain_suffix.map(ProviderMatch::DomainSuffix);
                    let x = m.mx_suffix.map(ProviderMatch::MxSuffix);
                    let h = m.host_name.map(ProviderMatch::HostName);
                    [d, x, h].into_iter().flatten()
                })
                .collect(),
        ),
        _ => return Err(at("a rule needs a domain or a provider match list".into())),
    };
    let patterns = match spec.regex {
        OneOrMany::One(r) => vec![r],
        OneOrMany::Many(list) => list,
    };
    let regex = patterns
        .iter()
        .map(|p| regex::Regex::new(p).map_err(|e| at(format!("regex {p:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let action = match spec.action {
        ActionSpec::Named(a) if a == "Suspend" => Action::Suspend,
        ActionSpec::Named(a) if a == "SuspendTenant" => Action::SuspendTenant,
        ActionSpec::Named(a) if a == "SuspendCampaign" => Action::SuspendCampaign,
        ActionSpec::Table(t) if t.contains_key("SetConfig") => {
            let set = &t["SetConfig"];
            let name = set["name"].as_str().ok_or_else(|| at("SetConfig needs a name".into()))?.to_string();
            let value = match &set["value"] {
                serde_json::Value::String(v) => v.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(at(format!("SetConfig value {other}: give a string or a number"))),
            };
            // Checked now, so a rule Petrel cannot apply fails the load.
            petrel_delivery::EgressPathConfig::default().set_option(&name, &value).map_err(at)?;
            Action::SetConfig { name, value }
        }
        other => return Err(at(format!("unknown action {other:?} (Suspend, SuspendTenant, SuspendCampaign)"))),
    };
    let trigger = match spec.trigger {
        None => Trigger::Immediate,
        Some(TriggerSpec::Named(t)) if t == "Immediate" => Trigger::Immediate,
        Some(TriggerSpec::Named(t)) => {
            return Err(at(format!("unknown trigger {t:?} (Immediate, {{Threshold = \"N/period\"}})")));
        }
        Some(TriggerSpec::Threshold { threshold }) => parse_threshold(&threshold).map_err(at)?,
    };
    let duration = spec.duration.to_duration("duration").map_err(at)?;
    Ok(AutomationRule { name, scope, regex, action, duration, trigger })
}

pub(crate) fn install(lua: &Lua, kumo: &mlua::Table) -> mlua::Result<()> {
    kumo.set("configure_shaping_automation", lua.create_function(configure)?)?;
    // Checks one rule anywhere (the shaping helper, at setup), so a bad rule
    // names its file and block before init runs.
    let check = lua.create_function(|lua, value: Value| {
        let spec: RuleSpec = lua.from_value(value)?;
        rule(spec).map(|_| ()).map_err(mlua::Error::runtime)
    })?;
    kumo.set("configure_shaping_automation_check", check)
}

fn configure(lua: &Lua, value: Value) -> mlua::Result<()> {
    crate::init::record(lua, "configure_shaping_automation", value, |c, spec: AutomationSpec, _| {
        let rules = spec.rules.into_iter().map(rule).collect::<Result<Vec<_>, _>>()?;
        c.automation.extend(rules);
        Ok(())
    })
}
