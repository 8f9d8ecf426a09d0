//! `kumo.http`'s client against a real HTTP server on loopback: methods,
//! Basic and bearer credentials, headers, bodies, JSON and status checks,
//! as the request reached the server.

use petrel_lua::PolicyEngine;
use petrel_queue::{QueueKey, QueuePolicy};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A server answering by path, recording each request's head and body.
fn serve() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            head.push_str(&format!("BODY {}", String::from_utf8_lossy(&body)));
            let (status, text) = match head.split_whitespace().nth(1).unwrap_or("") {
                "/json" => ("200 OK", r#"{"answer":42,"list":[1,2]}"#),
                "/missing" => ("404 Not Found", "no such thing"),
                _ => ("201 Created", "made"),
            };
            record.lock().unwrap().push(head);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Reply: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    (url, seen)
}

#[tokio::test]
async fn get_put_post_with_credentials_headers_and_bodies() {
    let (url, seen) = serve();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("init.lua");
    std::fs::write(
        &policy,
        format!(
            r#"local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '/tmp/petrel-never-opened' }}
end)
kumo.on('get_queue_config', function()
  local client = kumo.http.build_client {{ timeout = '5s' }}
  local got = client:get('{url}/json'):bearer_auth('tok-123'):send()
  local put = client:put('{url}/put'):basic_auth('user', 'pw'):header('X-Tenant', 'acme'):body('payload'):send()
  local post = client:post('{url}/post'):headers {{ ['X-One'] = '1', ['X-Two'] = '2' }}:body('{{"k":"v"}}'):send()
  local missing = client:get('{url}/missing'):send()
  local parts = {{
    got:status_code(), got:json().answer, #got:json().list, got:headers()['x-reply'],
    put:status_code(), tostring(put:status_is_success()), put:text(),
    post:status_code(), missing:status_code(), tostring(missing:status_is_client_error()), missing:status_reason(),
  }}
  for i, v in ipairs(parts) do parts[i] = tostring(v) end
  return kumo.make_queue_config {{ egress_pool = table.concat(parts, '|') }}
end)
"#
        ),
    )
    .unwrap();
    let engine = PolicyEngine::load(&policy, "h").unwrap();
    let key = QueueKey { domain: "d.test".into(), tenant: None, campaign: None, routing_domain: None };
    let pool = engine.queue_config(&key).await.unwrap().egress_pool.unwrap();
    assert_eq!(pool, "200|42|2|yes|201|true|made|201|404|true|Not Found");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen[0].starts_with("GET /json ") && seen[0].contains("authorization: Bearer tok-123"), "{}", seen[0]);
    // user:pw in Base64.
    assert!(seen[1].starts_with("PUT /put ") && seen[1].contains("authorization: Basic dXNlcjpwdw=="), "{}", seen[1]);
    assert!(seen[1].contains("x-tenant: acme") && seen[1].ends_with("BODY payload"), "{}", seen[1]);
    assert!(seen[2].starts_with("POST /post ") && seen[2].contains("x-one: 1") && seen[2].contains("x-two: 2"));
    assert!(seen[2].ends_with(r#"BODY {"k":"v"}"#), "{}", seen[2]);
    assert!(seen.iter().all(|r| r.contains("user-agent: petrel/")), "{seen:?}");
}
