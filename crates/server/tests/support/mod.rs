//! What the HTTP suites share: the real server on a random port with a SQLite store of its
//! own per test and the Acme knowledge base.
//!
//! Embedding the knowledge base is the slow part of a start (a minute of both cores), so it
//! is done once per test process: a seeding server ingests the folder into a store and a
//! vector index of its own, and every test's server starts from a copy of both. The server
//! still syncs the folder at start-up as it always does; it finds every document unchanged
//! and every vector under its key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use concierge_server::{Config, Server};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// The admin key every test server accepts (from the environment, as in production).
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
/// The widget key every test server accepts.
pub const WIDGET_KEY: &str = "test-widget-key-0123456789abcdef";

/// A client that sends `key` as a bearer token on every request.
pub fn client_with(key: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().expect("header"));
    Client::builder().default_headers(headers).build().expect("client")
}

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
        copy_seed(seed(), dir.path());
        let mut config = config_in(dir.path());
        adjust(&mut config);
        let store_url = config.store.url.clone();
        let server = Server::build(&config).await.expect("server starts");
        let addr = server.local_addr().expect("bound");
        tokio::spawn(server.serve(std::future::pending()));
        Self { base: format!("http://{addr}"), client: client_with(ADMIN_KEY), store_url, _dir: dir }
    }

    /// A second server on this one's files (store, vectors), as after a restart.
    pub async fn start_again(&self) -> Self {
        self.start_again_with(|_| {}).await
    }

    /// [`start_again`](Self::start_again), configured by `adjust`.
    pub async fn start_again_with(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_in(self._dir.path());
        adjust(&mut config);
        let server = Server::build(&config).await.expect("server starts again");
        let addr = server.local_addr().expect("bound");
        tokio::spawn(server.serve(std::future::pending()));
        let store_url = config.store.url.clone();
        Self { base: format!("http://{addr}"), client: client_with(ADMIN_KEY), store_url, _dir: dir }
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

/// Serves the real Acme backend on a random port; returns its URL.
pub async fn acme_backend() -> String {
    let data = concierge_acme::AcmeData::load(&repo().join("examples/acme/backend")).expect("seed data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(concierge_acme::serve(listener, data, std::future::pending()));
    format!("http://{addr}")
}

/// The demo's configuration file, with the backend moved to `backend`.
pub fn demo_config(backend: &str) -> Config {
    let path = repo().join("examples/acme/concierge.toml");
    let mut config: Config = toml::from_str(&std::fs::read_to_string(path).expect("demo config")).expect("parses");
    config.backends.get_mut("acme").expect("acme").url = backend.to_owned();
    config
}

/// A server configured as the demo is (router, specialists, escalation, approvals), on
/// the real Acme backend at `backend`.
pub async fn demo_agent(backend: &str) -> TestServer {
    demo_agent_with(backend, |_| {}).await
}

/// [`demo_agent`], then `adjust`.
pub async fn demo_agent_with(backend: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        as_demo(c, backend);
        adjust(c);
    })
    .await
}

/// Why a server configured as the demo, then `adjust`ed, refuses to start.
pub async fn demo_agent_refused(backend: &str, adjust: impl FnOnce(&mut Config)) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_seed(seed(), dir.path());
    let mut config = config_in(dir.path());
    as_demo(&mut config, backend);
    adjust(&mut config);
    match Server::build(&config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => error.to_string(),
    }
}

/// Configures the demo's agent (router, tools, specialists) on `config`.
fn as_demo(c: &mut Config, backend: &str) {
    let root = repo();
    let demo = demo_config(backend);
    c.backends = demo.backends;
    c.tools = demo.tools;
    c.router = demo.router;
    c.router.intents = Some(root.join("examples/acme/intents.toml"));
    c.agent = demo.agent;
    for specialist in &mut c.agent.specialists {
        specialist.prompt = root.join(&specialist.prompt);
    }
}

/// The configuration every test server starts from, keeping its files in `dir`.
fn config_in(dir: &Path) -> Config {
    let mut config = Config::default();
    config.secrets.database_url = None;
    config.knowledge.path = Some(repo().join("examples/acme/kb"));
    config.knowledge.data_dir = Some(dir.join("vectors"));
    config.knowledge.embedder =
        concierge_server::config::EmbedderConfig::Local { path: repo().join("models/all-minilm-l6-v2"), threads: 0 };
    config.llm.provider = "none".into();
    config.server.bind = "127.0.0.1:0".parse().expect("addr");
    config.store.url = format!("sqlite://{}", dir.join("api.db").display());
    config.secrets.admin_key = Some(ADMIN_KEY.to_owned().into());
    config.secrets.widget_key = Some(WIDGET_KEY.to_owned().into());
    // The suites send hundreds of requests a second from one address; the rate-limit
    // tests turn the limits on themselves.
    config.rate_limits.enabled = false;
    config
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The folder holding a store and a vector index with the Acme knowledge base ingested,
/// made on first use by a server of its own on a runtime of its own (each test has its own
/// runtime, which ends with the test).
fn seed() -> &'static Path {
    static SEED: OnceLock<tempfile::TempDir> = OnceLock::new();
    SEED.get_or_init(|| {
        std::thread::spawn(|| {
            let dir = tempfile::tempdir().expect("seed dir");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let server = Server::build(&config_in(dir.path())).await.expect("the seeding server starts");
                drop(server);
            });
            drop(runtime);
            dir
        })
        .join()
        .expect("seeding the knowledge base")
    })
    .path()
}

/// Copies the seed's store (with its write-ahead log, if any) and vector index into `dir`.
fn copy_seed(seed: &Path, dir: &Path) {
    for name in ["api.db", "api.db-wal"] {
        let from = seed.join(name);
        if from.is_file() {
            std::fs::copy(&from, dir.join(name)).expect("copy the seeded store");
        }
    }
    let vectors = dir.join("vectors");
    std::fs::create_dir_all(&vectors).expect("vector dir");
    for entry in std::fs::read_dir(seed.join("vectors")).expect("seeded vectors") {
        let entry = entry.expect("seeded vector file");
        std::fs::copy(entry.path(), vectors.join(entry.file_name())).expect("copy the seeded vectors");
    }
}
