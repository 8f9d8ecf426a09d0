//! Which event names `kumo.on` accepts. A misspelt name would register a
//! handler that never runs (a policy quietly not applied), and so would a
//! KumoMTA event Petrel does not raise yet: both are errors at load time.

/// Events Petrel raises.
pub(crate) const IMPLEMENTED: [&str; 17] = [
    "pre_init",
    "init",
    "validate_config",
    "get_egress_pool",
    "get_egress_source",
    "smtp_server_ehlo",
    "smtp_server_mail_from",
    "smtp_server_rcpt_to",
    "get_listener_domain",
    "smtp_server_auth_plain",
    "smtp_server_message_received",
    "get_queue_config",
    "get_egress_path_config",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "http_server_validate_auth_bearer",
    "should_enqueue_log_record",
];

/// Events KumoMTA documents that Petrel does not raise yet.
const NOT_YET: [&str; 18] = [
    "get_acl_definition",
    "proxy_init",
    "proxy_server_auth_rfc1929",
    "rebind_message",
    "requeue_message",
    "shutdown_logging",
    "smtp_client_rewrite_delivery_status",
    "smtp_server_connection_accepted",
    "smtp_server_data",
    "smtp_server_get_dynamic_parameters",
    "smtp_server_message_deferred_inject",
    "smtp_server_rewrite_response",
    "smtp_server_split_transaction",
    "spool_message_enumerated",
    "throttle_insert_ready_queue",
    "tsa_init",
    "tsa_load_shaping_data",
    "xfer_message_received",
];

/// Why `kumo.on(name, …)` is refused, if it is. Names with a dot
/// (`my.task`) are the policy's own events, raised by `kumo.spawn_task`.
pub(crate) fn check(name: &str) -> Result<(), String> {
    if IMPLEMENTED.contains(&name) || is_custom(name) {
        return Ok(());
    }
    if NOT_YET.contains(&name) {
        return Err(format!("Petrel does not raise the {name:?} event yet, so this handler would never run"));
    }
    let closest = IMPLEMENTED
        .iter()
        .chain(NOT_YET.iter())
        .map(|known| (strsim::levenshtein(name, known), *known))
        .min()
        .filter(|(distance, _)| *distance <= name.len() / 3 + 2);
    Err(match closest {
        Some((_, known)) => format!("unknown event {name:?}; did you mean {known:?}?"),
        None => format!("unknown event {name:?}"),
    })
}

/// A policy's own event (`my.task`): a dot keeps it apart from every name
/// Petrel or KumoMTA raises, so a typo of a built-in name is still caught.
pub(crate) fn is_custom(name: &str) -> bool {
    name.contains('.') && !name.starts_with('.') && !name.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_name_and_unraised_events_say_so() {
        assert!(check("smtp_server_message_received").is_ok());
        let typo = check("smtp_server_mesage_received").unwrap_err();
        assert!(typo.contains("did you mean \"smtp_server_message_received\""), "{typo}");
        assert!(check("get_egress_source").is_ok());
        assert!(check("smtp_server_data").unwrap_err().contains("does not raise"));
        assert_eq!(check("zzz").unwrap_err(), "unknown event \"zzz\"");
        assert!(check("my.task").is_ok(), "a policy's own event");
    }
}
