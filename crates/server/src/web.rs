//! The web pages: the customer chat at `/`, the operator console at `/console`, and their
//! files at `/web/{file}`. The files of `web/` are compiled into the binary; `web.dir`
//! serves a company's own copy from disk instead (read on every request, so edits show at
//! once), file by file: a name it does not have falls back to the built-in one.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Builtin;

/// Where the pages come from.
#[derive(Debug, Clone, Default)]
pub struct WebAssets {
    dir: Option<PathBuf>,
    /// The widget key the chat page carries, so that it can open conversations.
    widget_key: Option<SecretString>,
}

/// The tag of `chat.html` the widget key is written into.
const WIDGET_KEY_TAG: &str = r#"<meta name="concierge-widget-key" content="">"#;

/// The pages are our own scripts and styles only: nothing inline runs, nothing is loaded
/// from elsewhere, and no other site may frame them.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

impl WebAssets {
    pub fn new(dir: Option<PathBuf>, widget_key: Option<SecretString>) -> Self {
        Self { dir, widget_key }
    }

    /// The page `name` as served: the chat page with the widget key written in.
    fn page(&self, name: &str) -> Option<Vec<u8>> {
        let bytes = self.read(name)?;
        let Some(key) = self.widget_key.as_ref().filter(|_| name == "chat.html") else {
            return Some(bytes);
        };
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            return Some(bytes);
        };
        let tag = format!(r#"<meta name="concierge-widget-key" content="{}">"#, escape(key.expose_secret()));
        Some(text.replacen(WIDGET_KEY_TAG, &tag, 1).into_bytes())
    }

    /// The bytes of `name` (a bare file name), from `web.dir` first when set.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        if !is_plain_name(name) {
            return None;
        }
        if let Some(dir) = &self.dir {
            if let Ok(bytes) = std::fs::read(dir.join(name)) {
                return Some(bytes);
            }
        }
        Builtin::get(name).map(|file| file.data.into_owned())
    }

    fn respond(&self, name: &str, request: &HeaderMap) -> Response {
        let Some(bytes) = self.page(name) else {
            return ApiError::not_found(format!("page {}", name.chars().take(100).collect::<String>())).into_response();
        };
        let etag = format!("\"{:x}\"", Sha256::digest(&bytes));
        let content_type = mime_guess::from_path(name).first_or_octet_stream();
        let mut response = if request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, content_type.essence_str().to_owned())], bytes).into_response()
        };
        let headers = response.headers_mut();
        if content_type.type_() == mime_guess::mime::TEXT {
            let typed = format!("{}; charset=utf-8", content_type.essence_str());
            if let Ok(value) = HeaderValue::from_str(&typed) {
                headers.insert(header::CONTENT_TYPE, value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        response
    }
}

/// `text` safe inside a double-quoted HTML attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file name of letters, digits, `.`, `-` and `_`, not starting with a dot: never a path.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

pub async fn chat_page(State(web): State<std::sync::Arc<WebAssets>>, headers: HeaderMap) -> Response {
    web.respond("chat.html", &headers)
}

pub async fn console_page(State(web): State<std::sync::Arc<WebAssets>>, headers: HeaderMap) -> Response {
    web.respond("console.html", &headers)
}

pub async fn asset(
    State(web): State<std::sync::Arc<WebAssets>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    web.respond(&name, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_served() {
        assert!(is_plain_name("chat.js"));
        assert!(is_plain_name("console-charts_v2.css"));
        for bad in ["", ".env", "../Cargo.toml", "a/b.js", "a\\b.js", "%2e%2e", "chat.js\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_pages_are_built_in() {
        let web = WebAssets::default();
        for page in ["chat.html", "console.html", "chat.js", "console.js", "style.css"] {
            assert!(web.read(page).is_some_and(|b| !b.is_empty()), "{page} is compiled in");
        }
        assert!(web.read("missing.html").is_none());
    }

    #[test]
    fn a_company_copy_overrides_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chat.html"), "<p>Our own chat</p>").unwrap();
        let web = WebAssets::new(Some(dir.path().to_owned()), None);
        assert_eq!(web.read("chat.html").unwrap(), b"<p>Our own chat</p>");
        assert!(web.read("console.html").is_some(), "a file the copy lacks is the built-in one");
    }

    #[test]
    fn the_chat_page_carries_the_widget_key_escaped() {
        let web = WebAssets::new(None, Some(SecretString::from("k\"<b>&1".to_owned())));
        let page = String::from_utf8(web.page("chat.html").unwrap()).unwrap();
        assert!(page.contains(r#"<meta name="concierge-widget-key" content="k&quot;&lt;b&gt;&amp;1">"#), "{page}");
        let console = String::from_utf8(web.page("console.html").unwrap()).unwrap();
        assert!(!console.contains("k&quot;"));
        let without = String::from_utf8(WebAssets::default().page("chat.html").unwrap()).unwrap();
        assert!(without.contains(WIDGET_KEY_TAG), "the built-in chat page has the tag to fill");
    }

    #[test]
    fn a_page_is_served_with_its_type_policy_and_etag() {
        let web = WebAssets::default();
        let response = web.respond("chat.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        let etag = headers[header::ETAG].clone();

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(web.respond("chat.js", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(web.respond("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
