//! `concierge eval agent`: the golden conversations played through a real server, on its
//! own store, against a fresh Acme backend, and scored turn by turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use concierge_agent::golden::{self, AgentMetrics, ExpectedCall, GoldenConversation, Observed, Tally};
use concierge_core::{ConversationId, TenantId};
use concierge_server::{Config, Server};
use concierge_store::Store;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(Args)]
pub struct AgentArgs {
    /// The golden conversations (JSON lines, see examples/acme/GOLDEN.md).
    #[arg(long, default_value = "examples/acme/golden.jsonl")]
    golden: PathBuf,
    /// The Acme backend's seed data, served fresh for the run.
    #[arg(long, default_value = "examples/acme/backend")]
    backend_data: PathBuf,
    /// Answer without a model (passages quoted): shows what the model adds, and is fast.
    #[arg(long)]
    no_model: bool,
    /// Only conversations with this tag (repeat for several: any of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only the first N conversations (after `--tag`).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the figures (and every missed check) as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write every turn (message, reply, metadata, calls) to this file, as JSON lines.
    #[arg(long)]
    transcripts: Option<PathBuf>,
}

pub async fn run(mut config: Config, args: AgentArgs) -> anyhow::Result<()> {
    let mut conversations = golden::read_golden(&args.golden)?;
    if !args.tags.is_empty() {
        conversations.retain(|c| c.tags.iter().any(|t| args.tags.contains(t)));
    }
    conversations.truncate(args.limit.unwrap_or(usize::MAX));
    anyhow::ensure!(!conversations.is_empty(), "no golden conversation is left to play");
    let articles = articles(&config)?;
    // The agent's own words may carry what its tool declarations say (an example order
    // number in a question for one): those count as evidence too.
    let declared: String = config
        .tools
        .iter()
        .map(|t| format!("{}\n{}\n{}\n", t.description, t.parameters, t.answer.as_deref().unwrap_or("")))
        .collect();
    let started = Instant::now();

    let data = concierge_acme::AcmeData::load(&args.backend_data)
        .with_context(|| format!("backend data in {}", args.backend_data.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend = format!("http://{}", listener.local_addr()?);
    tokio::spawn(concierge_acme::serve(listener, data, std::future::pending()));

    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("eval.db").display());
    config.store.url = store_url.clone();
    config.secrets.database_url = None;
    config.server.bind = "127.0.0.1:0".parse()?;
    for spec in config.backends.values_mut() {
        spec.url = backend.clone();
    }
    // The saved vectors are reused from a copy, so the run leaves the original alone.
    if let Some(saved) = config.knowledge.data_dir.clone().filter(|d| d.is_dir()) {
        copy_dir(&saved, &dir.path().join("vectors"))?;
    }
    config.knowledge.data_dir = Some(dir.path().join("vectors"));
    if args.no_model {
        config.llm.provider = concierge_server::config::NO_MODEL.into();
    }
    // The run calls its own server with a key made for it.
    let key = concierge_server::auth::fresh_key().map_err(anyhow::Error::msg)?;
    config.secrets.admin_key = Some(secrecy::SecretString::from(key.clone()));
    let model = config.llm.provider.clone();
    eprintln!("starting the server (model: {model}) and the Acme backend …");
    let server = Server::build(&config).await?;
    let base = format!("http://{}", server.local_addr()?);
    tokio::spawn(server.serve(std::future::pending()));
    let store = concierge_store::open(&store_url).await?;
    let client = crate::api_client(Some(&key), std::time::Duration::from_secs(120))?;

    let turns: usize = conversations.iter().map(|c| c.turns.len()).sum();
    let bar = ProgressBar::new(turns as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} turns, {elapsed} ({eta} left) {msg}")
            .expect("progress template"),
    );
    let run = Play {
        client: &client,
        base: &base,
        store: store.as_ref(),
        tenant: &config.tenant.id,
        articles: &articles,
        declared: &declared,
    };
    let mut observed = Vec::with_capacity(conversations.len());
    for conversation in &conversations {
        bar.set_message(conversation.id.clone());
        observed.push(run.conversation(conversation, &bar).await?);
    }
    bar.finish_and_clear();
    if let Some(path) = &args.transcripts {
        write_transcripts(path, &conversations, &observed)?;
    }
    let metrics = golden::score(&conversations, &observed);
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "model": model, "seconds": seconds, "metrics": metrics }))?
        );
    } else {
        print_report(&metrics, &model, seconds);
    }
    Ok(())
}

/// What plays one conversation and collects what the agent did.
struct Play<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    store: &'a dyn Store,
    tenant: &'a TenantId,
    /// Article id → its whole text, the evidence of a citation.
    articles: &'a BTreeMap<String, String>,
    /// The tools' descriptions and schemas.
    declared: &'a str,
}

impl Play<'_> {
    async fn conversation(&self, golden: &GoldenConversation, bar: &ProgressBar) -> anyhow::Result<Vec<Observed>> {
        let created: Value = self
            .client
            .post(format!("{}/v1/conversations", self.base))
            .json(&json!({ "customer_ref": golden.customer }))
            .send()
            .await?
            .json()
            .await?;
        let id: ConversationId = created["id"].as_str().context("a conversation id")?.parse()?;
        let mut said = String::new();
        let mut results = String::new();
        let mut out = Vec::new();
        for turn in &golden.turns {
            said.push_str(&turn.user);
            said.push('\n');
            let response = self
                .client
                .post(format!("{}/v1/conversations/{id}/messages", self.base))
                .json(&json!({ "content": turn.user }))
                .send()
                .await?;
            let status = response.status();
            let exchange: Value = response.json().await?;
            // A refused or timed-out request is a turn that failed, not the end of the run.
            let (seq, reply) = if status.is_success() {
                (exchange["message"]["seq"].as_i64().context("the message's seq")?, exchange["reply"].clone())
            } else {
                let code = exchange["error"]["code"].as_str().unwrap_or("error").to_owned();
                (
                    -1,
                    json!({ "content": "", "metadata": { "answered_by": "http_error", "error": code, "failed": true } }),
                )
            };
            let reply = &reply;
            let metadata = reply["metadata"].clone();
            let mut calls = Vec::new();
            for call in self.store.tool_calls(self.tenant, id).await? {
                if concierge_agent::CallContext::turn_of_key(&call.idempotency_key) == Some(seq) {
                    let result = call.result.clone().unwrap_or(Value::Null);
                    results.push_str(&result.to_string());
                    results.push('\n');
                    results.push_str(&in_units(&result));
                    calls.push(ExpectedCall { tool: call.tool, arguments: call.arguments });
                }
            }
            if let Some(waiting) = metadata.get("approval") {
                calls.push(ExpectedCall {
                    tool: waiting["tool"].as_str().unwrap_or("").into(),
                    arguments: waiting["arguments"].clone(),
                });
            }
            let ticket = metadata["escalation"]["ticket"].as_str().unwrap_or("");
            let mut evidence = format!("{said}\n{results}\n{ticket}\n{}", self.declared);
            for article in golden::cited_articles(&metadata) {
                if let Some(text) = self.articles.get(&article) {
                    evidence.push('\n');
                    evidence.push_str(text);
                }
            }
            out.push(Observed { reply: reply["content"].as_str().unwrap_or("").to_owned(), metadata, calls, evidence });
            bar.inc(1);
        }
        Ok(out)
    }
}

/// Amounts kept in cents, as the answer templates print them (`13298` → `132.98`).
fn in_units(value: &Value) -> String {
    let mut out = String::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let cents = inner.as_i64().or_else(|| inner.as_str().and_then(|s| s.parse().ok()));
                    match cents.filter(|_| key.to_lowercase().ends_with("cents")) {
                        Some(cents) => out.push_str(&format!("{}.{:02} ", cents / 100, cents % 100)),
                        None => stack.push(inner),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

fn write_transcripts(path: &Path, golden: &[GoldenConversation], observed: &[Vec<Observed>]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (conversation, turns) in golden.iter().zip(observed) {
        for (i, (turn, seen)) in conversation.turns.iter().zip(turns).enumerate() {
            let line = json!({
                "conversation": conversation.id,
                "turn": i + 1,
                "user": turn.user,
                "reply": seen.reply,
                "calls": seen.calls,
                "metadata": seen.metadata,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Every article of the configured knowledge base, by id: title and body.
fn articles(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(folder) = &config.knowledge.path else { return Ok(BTreeMap::new()) };
    let articles = concierge_retrieval::load_folder(folder).with_context(|| format!("{}", folder.display()))?;
    Ok(articles.into_iter().map(|a| (a.id.clone(), format!("{}\n{}", a.title, a.body))).collect())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn print_report(m: &AgentMetrics, model: &str, seconds: f64) {
    println!("golden set: {} conversations, {} turns; model {model}; {seconds:.0} s", m.conversations, m.turns);
    println!();
    println!("{:<34} {:>7} {:>9}", "measure", "score", "of");
    let rows: [(&str, Tally); 12] = [
        ("routing accuracy", m.routing),
        ("tool-call accuracy", m.tool_calls),
        ("asks for missing arguments", m.asks_for),
        ("cites an expected article", m.cites),
        ("approval when due", m.approvals),
        ("out-of-scope refusal", m.out_of_scope),
        ("reply mentions the facts", m.reply_mentions),
        ("escalation precision", m.escalation_precision),
        ("escalation recall", m.escalation_recall),
        ("resolution rate", m.resolved),
        ("resolution as expected", m.outcome_agreement),
        ("answers with every fact supported", m.supported_answers),
    ];
    for (name, tally) in rows {
        let score = tally.rate().map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        println!("{name:<34} {score:>7} {:>9}", format!("{}/{}", tally.hits, tally.total));
    }
    if !m.misses.is_empty() {
        println!();
        println!("missed checks ({}):", m.misses.len());
        for miss in &m.misses {
            println!(
                "  {} turn {} {}: expected {}, got {}",
                miss.conversation, miss.turn, miss.check, miss.expected, miss.got
            );
        }
    }
}
