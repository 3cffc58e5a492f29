//! What the HTTP suites share: the real server on a random port with a fresh SQLite store
//! per test and the Acme knowledge base.
#![allow(dead_code)]

use std::path::Path;

use concierge_server::{Config, Server};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

pub struct TestServer {
    pub base: String,
    pub client: Client,
    /// The store's URL, for tests that read what was stored.
    pub store_url: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// The server with no model: answers are quoted from the knowledge base.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The server with no model unless `adjust` configures one.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.secrets.database_url = None;
        config.knowledge.path = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/kb"));
        config.knowledge.data_dir = Some(dir.path().join("vectors"));
        config.knowledge.embedder = concierge_server::config::EmbedderConfig::Local {
            path: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2"),
            threads: 0,
        };
        config.llm.provider = "none".into();
        adjust(&mut config);
        let store_url = format!("sqlite://{}", dir.path().join("api.db").display());
        config.server.bind = "127.0.0.1:0".parse().expect("addr");
        config.store.url = store_url.clone();
        let server = Server::build(&config).await.expect("server starts");
        let addr = server.local_addr().expect("bound");
        tokio::spawn(server.serve(std::future::pending()));
        Self { base: format!("http://{addr}"), client: Client::new(), store_url, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_conversation(&self) -> String {
        let response = self.client.post(self.url("/v1/conversations")).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn say(&self, conversation: &str, content: &str) -> (StatusCode, Value) {
        let body = json!({ "content": content }).to_string();
        self.post_raw(&format!("/v1/conversations/{conversation}/messages"), Some("application/json"), body).await
    }

    pub async fn transcript(&self, conversation: &str) -> Value {
        let url = self.url(&format!("/v1/conversations/{conversation}"));
        self.client.get(url).send().await.expect("send").json().await.expect("json")
    }
}
