//! Plain HTTP request/response types for the two HTTP functions (intake, approve). The adapters
//! convert API Gateway events to and from these; the local server does the same.

use serde_json::json;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: Option<String>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Fields of an `application/x-www-form-urlencoded` body.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(status: u16, body: serde_json::Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into()), ("cache-control".into(), "no-store".into())],
            body: body.to_string(),
        }
    }

    /// A client error with a stable machine code and a sentence saying what to fix.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> HttpResponse {
        HttpResponse::json(status, json!({"error": code, "message": message.into()}))
    }

    /// A redirect the browser follows with a GET.
    pub fn redirect(status: u16, location: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![
                ("location".into(), location.to_string()),
                ("cache-control".into(), "no-store".into()),
                ("referrer-policy".into(), "same-origin".into()),
            ],
            body: String::new(),
        }
    }

    /// Adds a `Set-Cookie` (several may be set: each is its own header).
    pub fn with_cookie(mut self, set_cookie: &str) -> HttpResponse {
        self.headers.push(("set-cookie".into(), set_cookie.to_string()));
        self
    }

    /// An HTML page with a strict Content-Security-Policy: no scripts, no third-party anything.
    pub fn html(status: u16, body: String) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![
                ("content-type".into(), "text/html; charset=utf-8".into()),
                (
                    "content-security-policy".into(),
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'".into(),
                ),
                ("x-content-type-options".into(), "nosniff".into()),
                // For browsers that predate CSP frame-ancestors: the page is never framed.
                ("x-frame-options".into(), "DENY".into()),
                // The page's URL holds the link token: never send it to another origin. Not
                // `no-referrer`: with it browsers send `Origin: null` on the page's own POST,
                // which the approval door must refuse (a sandboxed attacker page sends the same).
                ("referrer-policy".into(), "same-origin".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body,
        }
    }
}

/// Escapes text for HTML element and attribute contexts.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
