//! The `concierge` binary as an operator uses it: each test runs the real executable in a
//! child process, with its own temporary folder for configuration, database and logs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a refused start-up may take at most; it should be nearly instant.
const QUICK_EXIT: Duration = Duration::from_secs(20);

/// The binary with no configuration from the test's own environment: CI sets
/// `DATABASE_URL`, which would override every configured store.
fn concierge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("CONCIERGE_")) {
            command.env_remove(name);
        }
    }
    command.env_remove("DATABASE_URL").env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("bound address").port()
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A child process whose output goes to files; it is killed when dropped, and its output is
/// printed if the test is failing.
struct RunningProcess {
    name: &'static str,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl RunningProcess {
    fn spawn(name: &'static str, mut command: Command, logs: &Path) -> Self {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        command
            .stdout(File::create(&stdout).expect("create the stdout file"))
            .stderr(File::create(&stderr).expect("create the stderr file"));
        let child = command.spawn().expect("start concierge");
        Self { name, child, stdout, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process ends within `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_some()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- {} stdout ----\n{}", self.name, self.stdout());
            eprintln!("---- {} stderr ----\n{}", self.name, self.stderr());
        }
    }
}

// ---- help -------------------------------------------------------------------------------

#[test]
fn help_lists_the_serve_migrate_demo_and_chat_commands() {
    let output = concierge().arg("--help").output().expect("run concierge --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate", "demo", "chat"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "`{command}` missing from:\n{help}");
    }
}

// ---- a bad configuration ----------------------------------------------------------------

/// What `concierge --config FILE serve` did with a configuration it should refuse.
struct RefusedStart {
    config_file: PathBuf,
    stderr: String,
}

/// Runs `serve` with `toml` as the configuration file (`None`: the file does not exist),
/// checks it exits non-zero at once without opening a store or listening, and gives back
/// what it said.
fn serve_refuses(toml: Option<&str>) -> RefusedStart {
    let dir = TempDir::new().expect("a temporary folder");
    let config_file = dir.path().join("concierge.toml");
    if let Some(toml) = toml {
        std::fs::write(&config_file, toml).expect("write the configuration");
    }
    let store = dir.path().join("store.db");
    let mut command = concierge();
    command.arg("--config").arg(&config_file).arg("serve").env("CONCIERGE_STORE__URL", sqlite_url(&store));
    let mut serve = RunningProcess::spawn("serve", command, dir.path());

    let status = serve.wait_for_exit(QUICK_EXIT).expect("a refused configuration ends the process at once");
    assert!(!status.success(), "exit status {status}");
    let stderr = serve.stderr();
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(!store.exists(), "no store is opened with a refused configuration");
    RefusedStart { config_file, stderr }
}

#[test]
fn serve_with_a_wrongly_typed_value_exits_naming_the_file_and_the_key() {
    let refused = serve_refuses(Some("[server]\nmax_body_bytes = \"lots\"\n"));
    assert!(refused.stderr.contains(&refused.config_file.display().to_string()), "{}", refused.stderr);
    assert!(refused.stderr.contains("server.max_body_bytes"), "{}", refused.stderr);
}

#[test]
fn serve_with_an_unknown_key_exits_naming_the_file_and_the_key() {
    let refused = serve_refuses(Some("[server]\nmax_body_bytes = 65536\nprot = 8080\n"));
    assert!(refused.stderr.contains(&refused.config_file.display().to_string()), "{}", refused.stderr);
    assert!(refused.stderr.contains("prot") && refused.stderr.contains("unknown field"), "{}", refused.stderr);
}

#[test]
fn serve_with_an_out_of_range_value_exits_naming_the_file_and_the_key() {
    let refused = serve_refuses(Some("[server]\nmax_body_bytes = 10\n"));
    assert!(refused.stderr.contains(&refused.config_file.display().to_string()), "{}", refused.stderr);
    assert!(refused.stderr.contains("server.max_body_bytes"), "{}", refused.stderr);
}

#[test]
fn serve_with_a_missing_config_file_exits_naming_the_file() {
    let refused = serve_refuses(None);
    assert!(refused.stderr.contains(&refused.config_file.display().to_string()), "{}", refused.stderr);
    assert!(refused.stderr.contains("does not exist"), "{}", refused.stderr);
}

// ---- migrate ----------------------------------------------------------------------------

#[test]
fn migrate_creates_the_sqlite_file_and_running_it_again_is_harmless() {
    let dir = TempDir::new().expect("a temporary folder");
    let database = dir.path().join("x.db");
    let config_file = dir.path().join("concierge.toml");
    std::fs::write(&config_file, format!("[store]\nurl = \"{}\"\n", sqlite_url(&database))).expect("write config");

    for run in ["first", "second"] {
        let mut command = concierge();
        command.arg("--config").arg(&config_file).arg("migrate");
        let mut migrate = RunningProcess::spawn("migrate", command, dir.path());
        let status = migrate.wait_for_exit(QUICK_EXIT).expect("migrate finishes");
        assert!(status.success(), "{run} run: exit status {status}");
        assert!(migrate.stdout().contains("migrated the sqlite store"), "{run} run: {}", migrate.stdout());
        assert!(database.is_file(), "{run} run: {} exists", database.display());
    }
}

// ---- the demo, end to end ---------------------------------------------------------------

/// How long the demo may take to load its knowledge base and start listening.
// Start-up loads the model and, on a first start, embeds the whole knowledge base.
const DEMO_START: Duration = Duration::from_secs(240);

/// Polls `GET /healthz` until it answers, failing early if the demo has exited.
async fn wait_until_healthy(client: &reqwest::Client, base: &str, demo: &mut RunningProcess) {
    let deadline = Instant::now() + DEMO_START;
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            let body: Value = response.json().await.expect("healthz answers JSON");
            assert_eq!(body["status"], "ok", "{body}");
            return;
        }
        assert!(!demo.has_exited(), "the demo exited before it was healthy");
        assert!(Instant::now() < deadline, "the demo did not answer /healthz within {DEMO_START:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn json_answer(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

#[tokio::test]
async fn demo_answers_over_http_and_in_the_chat_and_stops_cleanly_on_sigterm() {
    let dir = TempDir::new().expect("a temporary folder");
    let database = dir.path().join("demo.db");
    let (port, backend_port) = (free_port(), free_port());
    let mut command = concierge();
    command
        .args(["demo", "--port", &port.to_string(), "--backend-port", &backend_port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CONCIERGE_STORE__URL", sqlite_url(&database))
        .env("CONCIERGE_ADMIN_KEY", DEMO_ADMIN_KEY)
        .env("CONCIERGE_WIDGET_KEY", DEMO_WIDGET_KEY)
        // JSON lines, and what the agent does at debug level: the messages it stores and
        // the tools it calls, with their arguments and results.
        .env("CONCIERGE_LOG__FORMAT", "json")
        .env("CONCIERGE_LOG__LEVEL", "info,concierge_server=debug,concierge_agent=debug");
    let mut demo = RunningProcess::spawn("demo", command, dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let anonymous = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
    let client = keyed_client(DEMO_WIDGET_KEY, None);

    wait_until_healthy(&anonymous, &base, &mut demo).await;
    // Nothing but health and the pages without a key; the chat page carries the widget key.
    let (status, refused) =
        json_answer(anonymous.post(format!("{base}/v1/conversations")).send().await.expect("post")).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(refused["error"]["code"], "unauthenticated");
    let page = anonymous.get(format!("{base}/")).send().await.expect("the chat page").text().await.expect("html");
    assert!(page.contains(&format!(r#"<meta name="concierge-widget-key" content="{DEMO_WIDGET_KEY}">"#)), "{page}");
    assert!(demo.stdout().contains(&format!("/console#key={DEMO_ADMIN_KEY}")), "{}", demo.stdout());
    assert!(database.is_file(), "the demo keeps its store where CONCIERGE_STORE__URL says");
    assert!(demo.stdout().contains(&format!("http://127.0.0.1:{backend_port}")), "{}", demo.stdout());

    // A conversation over the API.
    let (status, conversation) =
        json_answer(client.post(format!("{base}/v1/conversations")).json(&json!({})).send().await.expect("create"))
            .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{conversation}");
    let id = conversation["id"].as_str().expect("the conversation has an id").to_owned();
    // The widget key reaches this conversation with its token, and only with it.
    let token = conversation["access_token"].as_str().expect("an access token").to_owned();
    let transcript_url = format!("{base}/v1/conversations/{id}");
    let (status, refused) = json_answer(client.get(&transcript_url).send().await.expect("transcript")).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["code"], "conversation_forbidden");
    let client = keyed_client(DEMO_WIDGET_KEY, Some(&token));

    let question = json!({ "content": "How do I descale my kettle?" });
    let messages = format!("{base}/v1/conversations/{id}/messages");
    let (status, exchange) = json_answer(client.post(&messages).json(&question).send().await.expect("post")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{exchange}");
    let reply = &exchange["reply"];
    assert!(reply["content"].as_str().is_some_and(|c| !c.trim().is_empty()), "{reply}");
    let citations = reply["metadata"]["citations"].as_array().expect("citations are a list");
    assert!(!citations.is_empty(), "the answer cites the help centre: {reply}");
    assert!(citations.iter().all(|c| c["url"].as_str().is_some_and(|u| u.starts_with("http"))), "{reply}");
    // The embedded model was asked, and what is sent passed the grounding gate or is the
    // quoted passage.
    let metadata = &reply["metadata"];
    assert_eq!(metadata["model"], "local/qwen2.5-coder-0.5b-instruct-q8_0-mix", "{reply}");
    assert!(metadata["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 100), "{reply}");
    let passed = metadata["grounding"]["passed"].as_bool().expect("the gate's verdict is recorded");
    let answered_by = if passed { "knowledge_base_llm" } else { "knowledge_base_quote" };
    assert_eq!(metadata["answered_by"], answered_by, "{reply}");

    // An order question goes to the orders specialist, which asks the backend.
    let question = json!({ "content": "Where is my order A-10024?" });
    let (status, exchange) = json_answer(client.post(&messages).json(&question).send().await.expect("post")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{exchange}");
    assert_eq!(exchange["reply"]["metadata"]["tool"]["name"], "get_order", "{exchange}");
    assert!(exchange["reply"]["content"].as_str().is_some_and(|c| c.contains("is delayed")), "{exchange}");

    let (status, transcript) = json_answer(client.get(&transcript_url).send().await.expect("transcript")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{transcript}");
    let turns: Vec<(&str, i64)> = transcript["messages"]
        .as_array()
        .expect("messages are a list")
        .iter()
        .map(|m| (m["role"].as_str().unwrap_or("?"), m["seq"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(turns, [("user", 1), ("assistant", 2), ("user", 3), ("assistant", 4)]);

    // The company's backend runs next to it.
    let (status, order) = json_answer(
        client.get(format!("http://127.0.0.1:{backend_port}/orders/A-10024")).send().await.expect("backend"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{order}");
    assert_eq!(order["status"], "delayed");

    // The terminal chat against the running demo.
    let mut chat_command = concierge();
    chat_command.args(["chat", "--url", &base, "--key", DEMO_WIDGET_KEY]).stdin(Stdio::piped());
    let mut chat = RunningProcess::spawn("chat", chat_command, dir.path());
    {
        use std::io::Write;
        let mut stdin = chat.child.stdin.take().expect("the chat's stdin");
        stdin.write_all(b"How do I reset my password?\n/quit\n").expect("type into the chat");
    }
    let status = chat.wait_for_exit(Duration::from_secs(60)).expect("the chat ends after /quit");
    assert!(status.success(), "chat exit status {status}");
    let said = chat.stdout();
    assert!(said.lines().any(|l| l.starts_with("concierge>")), "{said}");
    // Citations are listed as `[n] title`; the best passage is numbered last in the prompt.
    let cited = |l: &str| {
        let l = l.trim_start();
        l.starts_with('[') && l[1..].split_once(']').is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    };
    assert!(said.lines().any(|l| cited(l) && l.contains("password")), "{said}");

    // Personal data in a message: replaced before it is stored, and never in a log line.
    let personal = json!({ "content":
        "I'm maria.lopez@example.com, phone +1 (415) 555-0134, SSN 123-45-6789; was card 4111 1111 1111 1111 charged for A-10024?" });
    let (status, exchange) = json_answer(client.post(&messages).json(&personal).send().await.expect("post")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{exchange}");
    let kept = exchange["message"]["content"].as_str().expect("the stored message");
    assert!(kept.contains("[CARD]") && kept.contains("[SSN]") && !kept.contains("4111"), "{kept}");

    // A container stop: SIGTERM, and the demo finishes cleanly.
    let kill = Command::new("kill").arg("-TERM").arg(demo.pid().to_string()).status().expect("run kill");
    assert!(kill.success(), "kill -TERM {}", demo.pid());
    let status = demo.wait_for_exit(Duration::from_secs(10)).expect("the demo stops within 10 s of SIGTERM");
    assert!(status.success(), "demo exit status {status}");

    // The logs: one JSON object per line, the personal data replaced, no key anywhere.
    let logs = demo.stderr();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not a JSON line: {line}");
    }
    assert!(logs.contains("customer message stored") && logs.contains("tool called"), "{logs}");
    assert!(logs.contains("[EMAIL]") && logs.contains("[PHONE]"), "the debug lines held personal data: {logs}");
    for secret in ["maria.lopez@example.com", "555-0134", "123-45-6789", "4111", DEMO_ADMIN_KEY, DEMO_WIDGET_KEY] {
        assert!(!logs.contains(secret), "the log holds {secret}");
    }
}

const DEMO_ADMIN_KEY: &str = "demo-test-admin-key-0123456789abcdef";
const DEMO_WIDGET_KEY: &str = "demo-test-widget-key-0123456789abcdef";

/// A client sending `key`, and with `token` the conversation token a widget needs.
fn keyed_client(key: &str, token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().expect("a header"));
    if let Some(token) = token {
        headers.insert("x-conversation-token", token.parse().expect("a header"));
    }
    reqwest::Client::builder().timeout(Duration::from_secs(30)).default_headers(headers).build().expect("a client")
}

#[test]
fn keys_are_made_listed_and_revoked_in_the_store() {
    let dir = TempDir::new().expect("a temporary folder");
    let store = sqlite_url(&dir.path().join("keys.db"));
    let run = |args: &[&str]| {
        let output = concierge()
            .arg("keys")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CONCIERGE_STORE__URL", &store)
            .env("RUST_LOG", "error")
            .output()
            .expect("runs");
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), out.into_owned(), err.into_owned())
    };
    let (ok, key, said) = run(&["create", "--role", "operator", "--label", "support desk"]);
    assert!(ok, "{said}");
    let key = key.trim();
    let prefix = key.strip_prefix("ck_").and_then(|rest| rest.split('_').next()).expect("a ck_ key");
    assert_eq!(key.len(), 3 + 12 + 1 + 43, "{key}");
    assert!(said.contains("shown only this once"), "{said}");

    let (ok, listed, said) = run(&["list"]);
    assert!(ok, "{said}");
    let line = listed.lines().find(|l| l.starts_with(prefix)).expect("the key is listed");
    assert!(line.contains("operator") && line.contains("support desk") && !listed.contains(key), "{listed}");

    let (ok, _, said) = run(&["revoke", prefix]);
    assert!(ok, "{said}");
    let (_, listed, _) = run(&["list"]);
    let line = listed.lines().find(|l| l.starts_with(prefix)).expect("still listed");
    assert!(!line.contains(" - "), "the revocation time is shown: {line}");

    let (ok, _, said) = run(&["create", "--role", "boss", "--label", "x"]);
    assert!(!ok && said.contains("boss"), "an unknown role is refused: {said}");
    let (ok, _, said) = run(&["revoke", "nosuchprefix"]);
    assert!(!ok && said.contains("not found"), "{said}");
}

#[test]
fn graph_prints_the_support_graph_as_mermaid() {
    let output = concierge()
        .args(["--config", "examples/acme/concierge.toml", "graph", "--format", "mermaid"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "error")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    for node in
        ["load_context", "guard_in", "classify", "specialist", "tools", "check_escalation", "escalate", "respond"]
    {
        assert!(text.contains(&format!("[\"{node}\"]")), "{node} missing: {text}");
    }
    assert!(text.contains("start -. step limit .->"), "{text}");
}
