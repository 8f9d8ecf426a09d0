//! Headless Chromium driven through ChromeDriver's WebDriver protocol
//! (Debian's `chromium` and `chromium-driver`, which `make test`
//! installs): open a page, find, type, click, read what a person would
//! read, and take screenshots. Blocking calls; run them off the runtime.

use base64::Engine;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; the driver and browser stop when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let request = ureq::request(method, url).timeout(Duration::from_secs(60));
    let answer = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    match answer {
        Ok(r) => r.into_json::<Value>().map(|v| v["value"].clone()).map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!("{code}: {}", r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

impl Browser {
    /// Start ChromeDriver on a free port and a headless Chromium under it.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromedriver (Debian package chromium-driver; `make test` installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while call("GET", &format!("{base}/status"), None).map(|v| v["ready"] != true).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags keep Chromium off the network it cannot reach here.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        } } });
        let session = call("POST", &format!("{base}/session"), Some(caps)).expect("start a browser session");
        let session = session["sessionId"].as_str().expect("session id").to_string();
        Self { driver, base, session, _profile: profile }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/session/{}{rest}", self.base, self.session)
    }

    /// Load `url` and wait for the page's first complete read of the API.
    pub fn open(&self, url: &str) {
        call("POST", &self.url("/url"), Some(json!({ "url": url }))).expect("navigate");
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = call("POST", &self.url("/element"), Some(json!({ "using": "css selector", "value": css }))).ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Wait (up to 10 s) for an element matching `css`; its id.
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.find(css) {
                return id;
            }
            assert!(Instant::now() < deadline, "no element {css:?} on the page:\n{}", self.text("body"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of the first element matching `css` ("" when there
    /// is none). The console redraws its tables every second, so an element
    /// found may be replaced before its text is read: find it again.
    pub fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let Some(id) = self.find(css) else { return String::new() };
            match call("GET", &self.url(&format!("/element/{id}/text")), None) {
                Ok(v) => return v.as_str().unwrap_or_default().to_string(),
                Err(e) if e.contains("stale element") => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("text of {css:?}: {e}"),
            }
        }
        panic!("{css:?} kept being replaced before its text could be read");
    }

    /// Wait (up to 15 s) until `check` holds for the text of `css`.
    pub fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.text(css);
            if check(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{css:?} never showed what was expected; it shows {text:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click the element matching `css`. The console redraws its tables
    /// every second, so an element found may be replaced before the click
    /// lands (a person's click goes to what is there then): find it again.
    pub fn click(&self, css: &str) {
        for _ in 0..20 {
            let id = self.wait_for(css);
            match call("POST", &self.url(&format!("/element/{id}/click")), Some(json!({}))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("click {css:?}: {e}"),
            }
        }
        panic!("{css:?} kept being replaced before it could be clicked");
    }

    /// Replace the text of the input matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css);
        call("POST", &self.url(&format!("/element/{id}/clear")), Some(json!({}))).expect("clear");
        call("POST", &self.url(&format!("/element/{id}/value")), Some(json!({ "text": text }))).expect("type");
    }

    /// Save what the window shows as a PNG.
    pub fn screenshot(&self, path: &Path) {
        let v = call("GET", &self.url("/screenshot"), None).expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call("DELETE", &self.url(""), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
