//! The approval pages in a real headless Chromium, driven over WebDriver (chromedriver) from Rust:
//! open a link from `dossier serve`, see the confirmation, click Approve, see the result; reopen:
//! already decided; an expired and a tampered link show their pages. Needs Debian's `chromium` and
//! `chromium-driver`, which `tests/run.sh` installs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dossier_core::signing::{LinkClaims, LinkSigner};

const BIN: &str = env!("CARGO_BIN_EXE_dossier");
const LINK_KEY: &str = r#"{"current": {"id": "browser", "secret": "browser-test-key-0123456789abcdef0123"}}"#;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.kill().is_ok() {
            self.0.wait().ok();
        }
    }
}

/// One HTTP/1.1 exchange; the WebDriver protocol is JSON over plain HTTP. chromedriver keeps the
/// connection open, so the body is read by its Content-Length (or chunks).
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}", payload.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Browser {
    driver: String,
    session: String,
}

impl Browser {
    fn open() -> (Browser, Killed) {
        let port = free_port();
        let child = Killed(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver is installed by tests/run.sh"),
        );
        let driver = format!("127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&driver).is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("dossier-chromium-{}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())]}}}});
        let (status, v) = http(&driver, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        (Browser { driver, session }, child)
    }

    fn go(&self, url: &str) {
        let (status, v) = http(&self.driver, "POST", &format!("/session/{}/url", self.session), Some(&json!({"url": url})));
        assert_eq!(status, 200, "navigate: {v}");
    }

    fn text(&self) -> String {
        let (_, v) = http(
            &self.driver,
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({"script": "return document.body.innerText", "args": []})),
        );
        v["value"].as_str().unwrap_or("").to_string()
    }

    fn title(&self) -> String {
        let (_, v) = http(&self.driver, "GET", &format!("/session/{}/title", self.session), None);
        v["value"].as_str().unwrap_or("").to_string()
    }

    fn click(&self, css: &str) {
        let (status, v) = http(
            &self.driver,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(&json!({"using": "css selector", "value": css})),
        );
        assert_eq!(status, 200, "find {css}: {v}");
        let element = v["value"].as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
        let (status, v) = http(&self.driver, "POST", &format!("/session/{}/element/{element}/click", self.session), Some(&json!({})));
        assert_eq!(status, 200, "click {css}: {v}");
    }

    fn screenshot(&self, path: &std::path::Path) {
        let (_, v) = http(&self.driver, "GET", &format!("/session/{}/screenshot", self.session), None);
        if let Some(b64) = v["value"].as_str() {
            if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(b64) {
                std::fs::write(path, png).ok();
            }
        }
    }

    fn close(&self) {
        http(&self.driver, "DELETE", &format!("/session/{}", self.session), None);
    }
}

fn wait_for(browser: &Browser, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = browser.text();
        if t.contains(needle) || Instant::now() > until {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn approval_pages_in_headless_chromium() {
    let mut serve = Killed(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--demo"])
            .env("DOSSIER_WEBHOOK_SECRET", "browser-test-webhook-secret")
            .env("DOSSIER_LINK_KEY", LINK_KEY)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(serve.0.stdout.take().unwrap()).lines();
    let mut links = Vec::new();
    let base = loop {
        let line = lines.next().expect("serve output").unwrap();
        if let Some(url) = line.strip_prefix("approval: ") {
            links.push(url.to_string());
        }
        if let Some(url) = line.strip_prefix("listening: ") {
            break url.to_string();
        }
    };
    let isolate = links.iter().find(|l| {
        let payload = l.split("t=").nth(1).unwrap().split('.').nth(1).unwrap();
        String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap().contains("isolate-endpoint")
    });
    let link = isolate.expect("the demo proposes an isolation").clone();

    let (browser, _driver) = Browser::open();
    // The link: a confirmation page; opening it twice decides nothing.
    browser.go(&link);
    let page = wait_for(&browser, "Approve this action?");
    assert!(page.contains("Approve this action?") && page.contains("Isolate endpoint") && page.contains("fin-ws-0231"), "{page}");
    assert!(page.contains("Nothing happens until you press a button"), "{page}");
    browser.go(&link);
    assert!(wait_for(&browser, "Approve this action?").contains("Approve this action?"), "a second GET still shows the undecided action");
    let shots = std::env::temp_dir();
    browser.screenshot(&shots.join("dossier-approval.png"));

    // Click Approve: the result page.
    browser.click("button[value=approve]");
    let result = wait_for(&browser, "You approved");
    assert!(result.contains("You approved") && result.contains("Isolate endpoint"), "{result}");
    browser.screenshot(&shots.join("dossier-approved.png"));

    // Reopen: already decided.
    browser.go(&link);
    let again = wait_for(&browser, "already decided");
    assert!(again.contains("already decided") && again.contains("soc-approver@example.com") && again.contains("executed"), "{again}");

    // A tampered link: one signature character changed. Not the last one: its unused low bits
    // may make the token undecodable ("damaged") rather than forged ("not valid").
    let sig_start = link.rfind('.').unwrap() + 1;
    let at = sig_start + (link.len() - sig_start) / 2;
    let mut tampered = link.clone();
    let swapped = if &link[at..at + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(at..at + 1, swapped);
    browser.go(&tampered);
    assert!(wait_for(&browser, "not valid").contains("not valid"), "{}", browser.text());
    assert_eq!(browser.title(), "Link not valid · Dossier");

    // An expired link for the same action (signed with the deployment's key, expiry in the past).
    let payload = link.split("t=").nth(1).unwrap().split('.').nth(1).unwrap();
    let mut claims: LinkClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims.exp = 1;
    let expired = format!("{base}/approve?t={}", LinkSigner::from_secret(LINK_KEY).unwrap().sign(&claims));
    browser.go(&expired);
    assert!(wait_for(&browser, "expired").contains("expired"), "{}", browser.text());
    assert_eq!(browser.title(), "Link expired · Dossier");
    browser.close();
}
