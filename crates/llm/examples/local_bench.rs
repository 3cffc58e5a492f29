//! Concierge's embedded model on the workload of `bench/local-llm`: the same requests
//! (`bench/local-llm/prompts.json`) that `bench/local-llm/peer.py` sends to llama-cpp-python's
//! server, measured the same way, printed as one JSON object of the same shape.
//!
//! ```text
//! cargo run --release -p concierge-llm --example local_bench -- \
//!     [--fixture bench/local-llm/prompts.json] [--model models/….gguf] \
//!     [--threads 2] [--sequences 4] [--context 4096] [--batch 512]
//! ```
//!
//! Three measurements:
//! - `long`: single stream, a long prompt that shares nothing with the request before it;
//!   prompt tok/s is the prompt tokens the engine evaluated over the time to the first
//!   token, generation tok/s is the tokens after the first over the time after it.
//! - `ttft`: a warm-up request puts the system prompt and tools in the cache, then a
//!   request with the same prefix and a different article and question is timed to its
//!   one-token answer (the fixture asks for one token: prompt evaluation plus the first
//!   token, whatever that token is).
//! - `concurrent`: every request of the group at once; the completion tokens of all of
//!   them over the wall-clock time from sending the first to finishing the last.
//!
//! The first event of an answer counts as its first token, whether text or a tool call.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concierge_llm::local::{EngineStats, LocalModel, LocalModelConfig};
use concierge_llm::{ChatEvent, ChatMessage, ChatModel, ChatRequest, FinishReason, LlmError, ToolDefinition};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

/// What the command line sets.
struct Args {
    fixture: PathBuf,
    model: Option<PathBuf>,
    threads: u32,
    sequences: u32,
    context: u32,
    batch: u32,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Args {
            fixture: PathBuf::from("bench/local-llm/prompts.json"),
            model: None,
            threads: 2,
            sequences: 4,
            context: 4096,
            batch: 512,
        };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| v.parse::<u32>().map_err(|e| format!("{flag} {v}: {e}"));
            match flag.as_str() {
                "--fixture" => args.fixture = PathBuf::from(value()?),
                "--model" => args.model = Some(PathBuf::from(value()?)),
                "--threads" => args.threads = number(value()?)?,
                "--sequences" => args.sequences = number(value()?)?,
                "--context" => args.context = number(value()?)?,
                "--batch" => args.batch = number(value()?)?,
                _ => return Err(format!("unknown argument {flag}; see the doc comment of local_bench.rs")),
            }
        }
        Ok(args)
    }
}

#[derive(Deserialize)]
struct Fixture {
    model: PathBuf,
    long: Vec<BenchRequest>,
    ttft: Vec<TtftPair>,
    concurrent: Vec<BenchRequest>,
}

#[derive(Deserialize)]
struct TtftPair {
    warmup: BenchRequest,
    measure: BenchRequest,
}

/// One request of the fixture, as both sides send it.
#[derive(Deserialize)]
struct BenchRequest {
    name: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    tools: Vec<ToolDefinition>,
    max_tokens: u32,
}

impl BenchRequest {
    /// Greedy, like the peer (temperature 0, no repetition penalty).
    fn chat(&self) -> ChatRequest {
        ChatRequest {
            messages: self.messages.clone(),
            tools: self.tools.clone(),
            temperature: Some(0.0),
            max_tokens: Some(self.max_tokens),
            ..ChatRequest::default()
        }
    }
}

/// One answer, timed from sending the request.
struct Answer {
    first: Option<Duration>,
    end: Duration,
    text: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    finish: Option<FinishReason>,
    /// A stream that ended in an error (a tool call the model got wrong, say): the answer
    /// stops there and the benchmark goes on.
    error: Option<String>,
}

impl Answer {
    fn gen_tok_s(&self) -> Option<f64> {
        let first = self.first?;
        let after = self.end.checked_sub(first)?.as_secs_f64();
        (self.completion_tokens > 1 && after > 0.0).then(|| (self.completion_tokens - 1) as f64 / after)
    }
}

async fn answer(model: &LocalModel, request: &BenchRequest) -> Result<Answer, LlmError> {
    let sent = Instant::now();
    let mut events = model.stream(&request.chat()).await?;
    let mut answer = Answer {
        first: None,
        end: Duration::ZERO,
        text: String::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        finish: None,
        error: None,
    };
    while let Some(event) = events.next().await {
        let at = sent.elapsed();
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                answer.first.get_or_insert(at);
                answer.end = at;
                answer.error = Some(error.to_string());
                break;
            }
        };
        match event {
            ChatEvent::TextDelta { text } => {
                answer.first.get_or_insert(at);
                answer.end = at;
                answer.text.push_str(&text);
            }
            ChatEvent::ToolCall { call } => {
                answer.first.get_or_insert(at);
                answer.end = at;
                answer.text.push_str(&format!(
                    "<tool_call>{}</tool_call>",
                    json!({"name": call.name, "arguments": call.arguments})
                ));
            }
            ChatEvent::Usage { usage } => {
                answer.prompt_tokens = usage.prompt_tokens;
                answer.completion_tokens = usage.completion_tokens;
            }
            ChatEvent::Finish { reason } => {
                // An answer with no text (a first token that ends it) came when it finished.
                answer.first.get_or_insert(at);
                answer.end = at;
                answer.finish = Some(reason);
            }
        }
    }
    Ok(answer)
}

fn seconds(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn finish_name(reason: Option<FinishReason>) -> Value {
    reason.map_or(Value::Null, |r| serde_json::to_value(r).unwrap_or(Value::Null))
}

/// One request on an otherwise idle engine, with the prompt tokens it evaluated and reused.
async fn run_one(model: &LocalModel, request: &BenchRequest) -> Result<Value, LlmError> {
    let before = model.stats();
    let mut answer = answer(model, request).await?;
    let after = model.stats();
    let evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated;
    if answer.error.is_some() {
        // No usage event came; the engine's own count of what it generated stands in.
        answer.completion_tokens = after.completion_tokens - before.completion_tokens;
    }
    let ttft = seconds(answer.first);
    let run = json!({
        "name": request.name,
        "prompt_tokens": answer.prompt_tokens,
        "prompt_evaluated": evaluated,
        "prompt_reused": after.prompt_tokens_reused - before.prompt_tokens_reused,
        "ttft_s": ttft,
        "prompt_tok_s": ttft.map(|t| evaluated as f64 / t),
        "completion_tokens": answer.completion_tokens,
        "gen_tok_s": answer.gen_tok_s(),
        "total_s": answer.end.as_secs_f64(),
        "finish": finish_name(answer.finish),
        "error": answer.error,
        "text": answer.text,
    });
    // Progress on stderr, so that a run cut short still shows what it measured.
    eprintln!(
        "{}",
        json!({"name": run["name"], "ttft_s": run["ttft_s"], "gen_tok_s": run["gen_tok_s"], "prompt_tok_s": run["prompt_tok_s"], "prompt_evaluated": run["prompt_evaluated"], "completion_tokens": run["completion_tokens"]})
    );
    Ok(run)
}

fn median(runs: &[Value], key: &str) -> Value {
    let mut values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let m = if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
    json!(m)
}

async fn measure_long(model: &LocalModel, fixture: &Fixture) -> Result<Value, LlmError> {
    let mut runs = Vec::new();
    for request in &fixture.long {
        runs.push(run_one(model, request).await?);
    }
    Ok(json!({"prompt_tok_s": median(&runs, "prompt_tok_s"), "gen_tok_s": median(&runs, "gen_tok_s"), "runs": runs}))
}

async fn measure_ttft(model: &LocalModel, fixture: &Fixture) -> Result<Value, LlmError> {
    let mut runs = Vec::new();
    for pair in &fixture.ttft {
        run_one(model, &pair.warmup).await?;
        runs.push(run_one(model, &pair.measure).await?);
    }
    Ok(json!({"ttft_s": median(&runs, "ttft_s"), "runs": runs}))
}

async fn measure_concurrent(model: &LocalModel, fixture: &Fixture) -> Result<Value, LlmError> {
    let before = model.stats();
    let started = Instant::now();
    let answers = futures::future::join_all(fixture.concurrent.iter().map(|r| answer(model, r))).await;
    let wall = started.elapsed().as_secs_f64();
    let after = model.stats();
    let mut streams = Vec::new();
    // The engine's count, which includes answers that ended in an error.
    let total = after.completion_tokens - before.completion_tokens;
    for (request, answer) in fixture.concurrent.iter().zip(answers) {
        let answer = answer?;
        streams.push(json!({
            "name": request.name,
            "ttft_s": seconds(answer.first),
            "end_s": answer.end.as_secs_f64(),
            "completion_tokens": answer.completion_tokens,
            "finish": finish_name(answer.finish),
            "error": answer.error,
            "text": answer.text,
        }));
    }
    Ok(json!({
        "wall_s": wall,
        "completion_tokens": total,
        "aggregate_tok_s": total as f64 / wall,
        "prompt_evaluated": after.prompt_tokens_evaluated - before.prompt_tokens_evaluated,
        "prompt_reused": after.prompt_tokens_reused - before.prompt_tokens_reused,
        "max_sequences_in_batch": after.max_sequences_in_batch,
        "streams": streams,
    }))
}

/// The most memory this process held resident, in MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The system's load averages, to tell a run on a busy machine (Linux only).
fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_owned())
}

/// The workspace root, so that the fixture's relative model path works from any directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stats_json(stats: EngineStats) -> Value {
    serde_json::to_value(stats).unwrap_or(Value::Null)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(&args.fixture)?)?;
    let path = args.model.clone().unwrap_or_else(|| workspace_root().join(&fixture.model));
    let config = LocalModelConfig {
        path,
        context_tokens: args.context,
        sequences: args.sequences,
        threads: args.threads,
        batch_tokens: args.batch,
        ..LocalModelConfig::default()
    };
    let loadavg_before = loadavg();
    let loading = Instant::now();
    let model = LocalModel::load(config.clone())?;
    let load_s = loading.elapsed().as_secs_f64();

    // One thread is enough to read the streams; the engine has its own.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (long, ttft, concurrent) = runtime.block_on(async {
        let long = measure_long(&model, &fixture).await?;
        let ttft = measure_ttft(&model, &fixture).await?;
        let concurrent = measure_concurrent(&model, &fixture).await?;
        Ok::<_, LlmError>((long, ttft, concurrent))
    })?;

    let out = json!({
        "side": "concierge",
        "engine": format!("concierge-llm {} local (llama-cpp-2)", env!("CARGO_PKG_VERSION")),
        "model": config.path.display().to_string(),
        "settings": {
            "threads": config.threads,
            "context_tokens": config.context_tokens,
            "sequences": config.sequences,
            "batch_tokens": config.batch_tokens,
        },
        "load_s": load_s,
        "long": long,
        "ttft": ttft,
        "concurrent": concurrent,
        "engine_stats": stats_json(model.stats()),
        "peak_rss_mib": peak_rss_mib(),
        // Other work on the machine skews every number: a busy machine shows here.
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
