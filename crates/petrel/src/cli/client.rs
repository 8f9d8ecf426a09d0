//! Talking to a running daemon's HTTP API.

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

pub struct Api {
    endpoint: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(endpoint: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), agent }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call(self.agent.get(&self.url(path)), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(self.agent.post(&self.url(path)), Some(body))
    }

    pub fn delete(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(self.agent.delete(&self.url(path)), Some(body))
    }

    /// A response that goes on (a live trace): its body, line by line.
    pub fn stream(&self, path: &str) -> Result<Box<dyn std::io::BufRead + Send>> {
        // No overall timeout: the stream lasts as long as the operator watches.
        let agent = ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(10)).build();
        match agent.get(&self.url(path)).call() {
            Ok(response) => Ok(Box::new(std::io::BufReader::new(response.into_reader()))),
            Err(e) => self.call(self.agent.get(&self.url(path)), None).and(Err(anyhow!("{e}"))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn call(&self, request: ureq::Request, body: Option<&Value>) -> Result<Value> {
        let result = match body {
            Some(body) => request.send_json(body.clone()),
            None => request.call(),
        };
        match result {
            Ok(response) => response.into_json().context("the daemon sent a response that is not JSON"),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(text);
                Err(anyhow!("the daemon answered {status}: {detail}"))
            }
            Err(ureq::Error::Transport(t)) => Err(anyhow!(
                "cannot reach the daemon at {}: {t}\n(is `petrel serve` running with kumo.start_http_listener? use --endpoint to point elsewhere)",
                self.endpoint
            )),
        }
    }
}

/// A query-string value, percent-encoded.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
