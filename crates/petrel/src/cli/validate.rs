//! `petrel validate`: load the policy, run `init`, run the policy's
//! `validate_config` checks (KumoMTA's deep validation, which the helpers
//! use for referential checks of their data), then call each config event
//! the policy handles with sample arguments, so what would only fail when
//! the first message arrives (a typo inside `make_queue_config`, a nil
//! index in `get_egress_path_config`) fails here, with its line.

use petrel_delivery::EgressPolicy;
use petrel_lua::{LuaSettings, PolicyEngine};
use petrel_queue::{QueueKey, QueuePolicy};
use petrel_smtp_server::{ConnMeta, PolicyError, SessionPolicy};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub(crate) fn run(policy: &Path, lua: LuaSettings, sample_domains: &[String]) -> ExitCode {
    let metrics = Arc::new(petrel_telemetry::Metrics::new());
    let engine = match PolicyEngine::load_with(policy, &crate::system_hostname(), metrics, lua) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{} is invalid:", policy.display());
            for error in &e.errors {
                eprintln!("  {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let domains: Vec<String> =
        if sample_domains.is_empty() { vec!["example.com".to_string()] } else { sample_domains.to_vec() };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petrel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut errors = runtime.block_on(engine.validate_config());
    errors.extend(runtime.block_on(try_config_events(&engine, &domains)));
    let late = runtime.block_on(late_bound(&engine, &mut errors));
    if !errors.is_empty() {
        eprintln!("{} fails in its config events:", policy.display());
        for error in &errors {
            eprintln!("  {error}");
        }
        return ExitCode::FAILURE;
    }
    println!("{} is valid.\n", policy.display());
    print!("{}", super::describe(&engine.current().config, &late));
    ExitCode::SUCCESS
}

/// The sources and pools the policy defines late (the sources helper's),
/// each asked of its event as delivery would ask; failures are errors.
async fn late_bound(engine: &PolicyEngine, errors: &mut Vec<String>) -> super::LateBound {
    let mut late = super::LateBound::default();
    let (sources, pools) = match engine.late_bound_names().await {
        Ok(names) => names,
        Err(e) => {
            errors.push(e);
            return late;
        }
    };
    for name in sources {
        match engine.egress_source(&name).await {
            Ok(Some(source)) => late.sources.push(source),
            Ok(None) => errors.push(format!("get_egress_source({name:?}) defines nothing")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for name in pools {
        match engine.egress_pool(&name).await {
            Ok(Some(pool)) => late.pools.push(pool),
            Ok(None) => errors.push(format!("get_egress_pool({name:?}) defines nothing")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    late
}

/// Every config event the policy handles, for every sample domain (and
/// every source, for the path config); the errors, each with its line.
async fn try_config_events(engine: &PolicyEngine, domains: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    let registry = engine.registry();
    let conn = ConnMeta {
        received_from: "192.0.2.1:25000".into(),
        received_via: "127.0.0.1:25".into(),
        hostname: crate::system_hostname(),
        ehlo_domain: Some("client.example".into()),
        authn_id: None,
        tls: false,
    };
    for domain in domains {
        let key = QueueKey { domain: domain.clone(), tenant: None, campaign: None, routing_domain: None };
        if let Err(e) = engine.queue_config(&key).await {
            errors.push(format!("{e} (domain {domain})"));
        }
        for source in registry.sources() {
            if let Err(e) = engine.egress_path_config(domain, &source.name, domain).await {
                errors.push(format!("{e} (domain {domain}, source {})", source.name));
            }
        }
        // A rejection is an answer; only a failure is an error.
        if let Err(PolicyError::Failed(e)) = engine.listener_domain(domain, "127.0.0.1:25", &conn).await {
            errors.push(format!("get_listener_domain: {e} (domain {domain})"));
        }
    }
    errors
}
