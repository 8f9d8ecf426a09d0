//! The OpenAPI document against the live server: every documented
//! operation exists, answers only with documented status codes, and its
//! JSON answers carry the properties the schema marks required.

use petrel_e2e::{Sink, TestDaemon, Workspace, http, smart_host_events};
use serde_json::{Value, json};

/// A request body that the operation accepts.
fn valid_body(path: &str) -> Option<Value> {
    Some(match path {
        "/api/inject/v1" => {
            json!({ "envelope_sender": "a@s.example", "recipients": [{ "email": "b@d.example" }], "content": "Subject: x\n\nx\n" })
        }
        "/api/admin/suspend/v1" => json!({ "domain": "d.example" }),
        "/api/admin/suspend-ready-q/v1" => json!({ "name": "default" }),
        "/api/admin/bounce/v1" => json!({ "domain": "nothing.example", "reason": "test" }),
        "/api/admin/rebind/v1" => json!({ "domain": "nothing.example", "to_pool": "default" }),
        "/api/admin/route/v1" => json!({ "sender": "a@s.example", "recipient": "b@d.example" }),
        _ => return None,
    })
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_live_server() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let daemon = TestDaemon::start(
        &ws.policy("  kumo.start_http_listener { listen = '127.0.0.1:0' }", &smart_host_events(sink.addr(), "")),
    )
    .unwrap();
    let base = format!("http://{}", daemon.http[0]);
    let doc = http("GET", format!("{base}/api-docs/openapi.json"), vec![], None).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 11, "{} paths documented", paths.len());
    let mut checked = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let documented: Vec<u16> =
                operation["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let json_header = vec![("Content-Type", "application/json".to_string())];
            // An invalid request, where the operation takes input.
            if operation.get("requestBody").is_some() {
                let reply = http(
                    &method.to_uppercase(),
                    format!("{base}{path}"),
                    json_header.clone(),
                    Some(b"{\"bogus\": 1}".to_vec()),
                )
                .await;
                assert!(
                    documented.contains(&reply.status),
                    "{method} {path} with a bad body answered {} (documented {documented:?}): {}",
                    reply.status,
                    reply.body
                );
            }
            // A valid one.
            let url = match path.as_str() {
                "/api/admin/inspect-message/v1" => format!("{base}{path}?id=0190f0a0b0c07d8e9f00112233445566"),
                _ => format!("{base}{path}"),
            };
            let body = valid_body(path).map(|b| serde_json::to_vec(&b).unwrap());
            let reply = http(&method.to_uppercase(), url, json_header, body).await;
            assert!(
                documented.contains(&reply.status),
                "{method} {path} answered {} (documented {documented:?}): {}",
                reply.status,
                reply.body
            );
            let schema = &operation["responses"][reply.status.to_string()]["content"]["application/json"]["schema"];
            if !schema.is_null() {
                let schema = resolve(&doc, schema);
                let value: Value =
                    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
                for field in schema["required"].as_array().into_iter().flatten() {
                    let field = field.as_str().unwrap();
                    assert!(value.get(field).is_some(), "{method} {path}: response lacks required {field}: {value}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 13, "{checked} operations checked");
    daemon.stop();
}
