//! The engine thread: one llama.cpp context, several sequences, continuous batching and
//! prefix reuse.
//!
//! Invariants:
//! - Only the engine thread touches the context; callers talk to it through a bounded
//!   queue and get their tokens back on a channel of their own.
//! - `Slot::cached` is exactly the tokens whose keys and values are in the cache for that
//!   sequence, at positions `0..cached.len()`.
//! - Every step decodes one batch holding the next token of every answering sequence and as
//!   many prompt tokens of newly admitted requests as fit, so a long prompt never stalls the
//!   conversations already answering.
//! - A request whose caller has gone away is dropped at the next step and its sequence freed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread;

use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::hermes::{parse_tool_calls, StreamSplitter};
use super::template::ChatTemplate;
use super::{grammar, LoadError, LocalModelConfig};
use crate::http::validated_tool_call;
use crate::model::{ChatModel, EventStream, LlmError};
use crate::types::{ChatEvent, ChatRequest, FinishReason, ToolChoice, Usage};

/// Answers are capped here when the request sets no `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 512;
/// A prefix held by another sequence is copied only when it saves at least this many tokens.
const MIN_SHARED_PREFIX: usize = 16;

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Counters of the work the engine did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub requests: u64,
    /// Prompt tokens that had to be evaluated.
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens found already in the cache and not evaluated again.
    pub prompt_tokens_reused: u64,
    pub completion_tokens: u64,
    /// Batches decoded, and the most sequences any one of them carried.
    pub batches: u64,
    pub max_sequences_in_batch: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    prompt_tokens_evaluated: AtomicU64,
    prompt_tokens_reused: AtomicU64,
    completion_tokens: AtomicU64,
    batches: AtomicU64,
    max_sequences_in_batch: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            requests: get(&self.requests),
            prompt_tokens_evaluated: get(&self.prompt_tokens_evaluated),
            prompt_tokens_reused: get(&self.prompt_tokens_reused),
            completion_tokens: get(&self.completion_tokens),
            batches: get(&self.batches),
            max_sequences_in_batch: get(&self.max_sequences_in_batch),
        }
    }
}

/// How the next token is picked.
#[derive(Debug, Clone, Copy)]
struct Sampling {
    temperature: f32,
    seed: u32,
    json: bool,
}

/// One request as the engine sees it.
struct Job {
    prompt: Vec<LlamaToken>,
    max_tokens: u32,
    stop: Vec<String>,
    sampling: Sampling,
    events: UnboundedSender<EngineEvent>,
}

#[derive(Debug)]
enum EngineEvent {
    Text(String),
    Done { usage: Usage, reason: FinishReason },
    Failed(String),
}

/// A GGUF chat model running in-process. Cheap to share: clone the `Arc` it lives in.
pub struct LocalModel {
    id: String,
    config: LocalModelConfig,
    model: Arc<LlamaModel>,
    template: ChatTemplate,
    jobs: SyncSender<Job>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel").field("id", &self.id).field("config", &self.config).finish_non_exhaustive()
    }
}

impl LocalModel {
    /// Loads the model and starts its engine thread. Blocking: seconds for a large file;
    /// call it from `spawn_blocking` in async code.
    pub fn load(config: LocalModelConfig) -> Result<Self, LoadError> {
        validate(&config)?;
        let path = config.path.clone();
        if !path.is_file() {
            return Err(LoadError::Missing(path));
        }
        let load_error = |message: String| LoadError::Load { path: path.clone(), message };
        let backend = backend().map_err(load_error)?;
        let started = std::time::Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| load_error(e.to_string()))?;
        let model = Arc::new(model);
        let source = model
            .chat_template(None)
            .map_err(|e| e.to_string())
            .and_then(|t| t.to_string().map_err(|e| e.to_string()))
            .map_err(|message| LoadError::Template { path: path.clone(), message })?;
        let template =
            ChatTemplate::new(&source).map_err(|message| LoadError::Template { path: path.clone(), message })?;

        let (jobs, queue) = mpsc::sync_channel(config.queue);
        let (ready_tx, ready_rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let engine = Engine::params(&config);
        let (thread_model, thread_counters) = (Arc::clone(&model), Arc::clone(&counters));
        thread::Builder::new()
            .name("local-model".into())
            .spawn(move || Engine::run(&thread_model, engine, queue, &thread_counters, ready_tx))
            .map_err(|e| load_error(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| load_error("the engine thread stopped while starting".into()))?
            .map_err(load_error)?;
        tracing::info!(
            model = %config.model,
            path = %path.display(),
            load_ms = started.elapsed().as_millis() as u64,
            sequences = config.sequences,
            context_tokens = config.context_tokens,
            threads = engine.threads,
            "local model loaded"
        );
        Ok(Self { id: format!("local/{}", config.model), config, model, template, jobs, counters })
    }

    /// Tokens `text` takes with this model's tokenizer.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    pub fn stats(&self) -> EngineStats {
        self.counters.snapshot()
    }

    pub fn config(&self) -> &LocalModelConfig {
        &self.config
    }

    /// The prompt exactly as the model sees it, for inspection and tests.
    pub fn render(&self, request: &ChatRequest) -> Result<String, LlmError> {
        // A turn that may not call tools is not shown any.
        let tools: &[_] = if request.tool_choice == ToolChoice::None { &[] } else { &request.tools };
        let mut prompt = self.template.render(&request.messages, tools).map_err(|message| LlmError::Rejected {
            provider: self.id.clone(),
            status: 400,
            message: format!("chat template: {message}"),
        })?;
        prompt.push_str(&prefill(request));
        Ok(prompt)
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        vocab.tokenize(text.as_bytes(), vocab.should_add_bos(), true)
    }

    fn job(&self, request: &ChatRequest, events: UnboundedSender<EngineEvent>) -> Result<Job, LlmError> {
        let prompt = self.tokenize(&self.render(request)?);
        let limit = u64::from(self.config.context_tokens);
        let needed = prompt.len() as u64 + u64::from(request.max_tokens.unwrap_or(1).max(1));
        if needed > limit {
            return Err(LlmError::ContextOverflow { provider: self.id.clone(), needed, limit });
        }
        // Without an explicit cap, the answer may use whatever room the prompt leaves, up to
        // the default.
        let room = (limit - prompt.len() as u64) as u32;
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).clamp(1, room);
        let temperature = request.temperature.unwrap_or(0.0);
        let sampling = Sampling {
            temperature,
            seed: request.seed.map_or_else(|| fastrand::u32(..), |s| s as u32),
            json: request.json_mode,
        };
        Ok(Job { prompt, max_tokens, stop: request.stop.clone(), sampling, events })
    }
}

/// Text the assistant's turn starts with, to hold the model to the tool choice: a required
/// call opens the call tag; a named tool opens the call with its name.
fn prefill(request: &ChatRequest) -> String {
    if request.tools.is_empty() || request.tool_choice == ToolChoice::None {
        return String::new();
    }
    match &request.tool_choice {
        ToolChoice::Required => "<tool_call>\n".into(),
        ToolChoice::Tool(name) => format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": "),
        ToolChoice::Auto | ToolChoice::None => String::new(),
    }
}

fn validate(config: &LocalModelConfig) -> Result<(), LoadError> {
    let setting = |key, value: String, expected| Err(LoadError::Setting { key, value, expected });
    if config.context_tokens < 256 {
        return setting("context_tokens", config.context_tokens.to_string(), "expected at least 256");
    }
    if !(1..=64).contains(&config.sequences) {
        return setting("sequences", config.sequences.to_string(), "expected 1 to 64");
    }
    if config.batch_tokens < config.sequences || config.batch_tokens > 8192 {
        return setting("batch_tokens", config.batch_tokens.to_string(), "expected from `sequences` to 8192");
    }
    if config.threads > 1024 {
        return setting("threads", config.threads.to_string(), "expected 0 (every core) to 1024");
    }
    if config.queue == 0 {
        return setting("queue", "0".into(), "expected at least 1");
    }
    if config.model.trim().is_empty() {
        return setting("model", String::new(), "expected the pinned model name");
    }
    Ok(())
}

#[async_trait::async_trait]
impl ChatModel for LocalModel {
    fn id(&self) -> &str {
        &self.id
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let (events, receiver) = unbounded_channel();
        let job = self.job(request, events)?;
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => LlmError::RateLimited { provider: self.id.clone(), retry_after: None },
            TrySendError::Disconnected(_) => {
                LlmError::Internal { provider: self.id.clone(), message: "the engine thread has stopped".into() }
            }
        })?;
        Ok(answer_stream(self.id.clone(), request.clone(), prefill(request), receiver))
    }
}

/// Turns the engine's tokens into chat events: prose streams as it comes, a tool call is
/// held back, parsed and validated when the answer ends.
fn answer_stream(
    provider: String,
    request: ChatRequest,
    prefill: String,
    receiver: UnboundedReceiver<EngineEvent>,
) -> EventStream {
    struct State {
        provider: String,
        request: ChatRequest,
        receiver: UnboundedReceiver<EngineEvent>,
        splitter: StreamSplitter,
        tools: bool,
        done: bool,
    }
    let tools = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    // A prefilled answer is a tool call from its first token.
    let mut splitter = StreamSplitter::default();
    if !prefill.is_empty() {
        splitter.push(&prefill, true);
    }
    let state = State { provider, request, receiver, splitter, tools, done: false };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            match state.receiver.recv().await {
                Some(EngineEvent::Text(piece)) => {
                    if let Some(text) = state.splitter.push(&piece, state.tools) {
                        return Some((vec![Ok(ChatEvent::TextDelta { text })], state));
                    }
                }
                Some(EngineEvent::Done { usage, reason }) => {
                    state.done = true;
                    let splitter = std::mem::take(&mut state.splitter);
                    let events = finish(&state.provider, &state.request, splitter, usage, reason);
                    return Some((events, state));
                }
                Some(EngineEvent::Failed(message)) => {
                    state.done = true;
                    return Some((vec![Err(LlmError::Internal { provider: state.provider.clone(), message })], state));
                }
                None => {
                    state.done = true;
                    return Some((vec![Err(LlmError::Truncated { provider: state.provider.clone() })], state));
                }
            }
        }
    });
    Box::pin(stream.flat_map(futures::stream::iter))
}

/// The last events of an answer: the held-back text or the tool calls, usage, finish.
fn finish(
    provider: &str,
    request: &ChatRequest,
    splitter: StreamSplitter,
    usage: Usage,
    reason: FinishReason,
) -> Vec<Result<ChatEvent, LlmError>> {
    let (output, shown) = splitter.finish();
    let held = &output[shown..];
    let mut events = Vec::new();
    let parsed = if request.tools.is_empty() || request.tool_choice == ToolChoice::None {
        None
    } else {
        Some(parse_tool_calls(held))
    };
    match parsed {
        Some(parsed) if !parsed.calls.is_empty() => {
            if !parsed.text.is_empty() {
                events.push(Ok(ChatEvent::TextDelta { text: parsed.text }));
            }
            for (n, call) in parsed.calls.into_iter().enumerate() {
                let id = format!("call_{n}");
                match validated_tool_call(provider, request, id, call.name, &call.arguments) {
                    Ok(call) => events.push(Ok(ChatEvent::ToolCall { call })),
                    Err(e) => return vec![Err(e)],
                }
            }
            events.push(Ok(ChatEvent::Usage { usage }));
            events.push(Ok(ChatEvent::Finish { reason: FinishReason::ToolCalls }));
            return events;
        }
        Some(parsed) if parsed.malformed.is_some() && reason == FinishReason::Stop => {
            let message = parsed.malformed.unwrap_or_default();
            return vec![Err(LlmError::MalformedStream { provider: provider.to_owned(), message })];
        }
        _ => {}
    }
    if !held.is_empty() {
        events.push(Ok(ChatEvent::TextDelta { text: held.to_owned() }));
    }
    events.push(Ok(ChatEvent::Usage { usage }));
    events.push(Ok(ChatEvent::Finish { reason }));
    events
}

/// Settings the engine thread runs with, resolved from the configuration.
#[derive(Debug, Clone, Copy)]
struct Engine {
    sequences: u32,
    context_tokens: u32,
    batch_tokens: u32,
    threads: i32,
}

/// A sequence of the context and the request it is answering, if any.
struct Slot {
    seq: i32,
    cached: Vec<LlamaToken>,
    last_used: u64,
    active: Option<Active>,
}

struct Active {
    job: Job,
    /// Prompt tokens still to evaluate, from `job.prompt[next_prompt..]`.
    next_prompt: usize,
    /// The token sampled last, to be evaluated in the next batch.
    next_token: Option<LlamaToken>,
    /// Where this sequence's logits are in the batch just decoded.
    logits_at: Option<i32>,
    sampler: LlamaSampler,
    reused: usize,
    generated: u32,
    bytes: Vec<u8>,
    text: String,
    sent: usize,
}

impl Engine {
    fn params(config: &LocalModelConfig) -> Self {
        let cores = thread::available_parallelism().map_or(1, |n| n.get() as i32);
        Engine {
            sequences: config.sequences,
            context_tokens: config.context_tokens,
            batch_tokens: config.batch_tokens,
            threads: if config.threads == 0 { cores } else { config.threads as i32 },
        }
    }

    fn run(
        model: &LlamaModel,
        engine: Engine,
        queue: Receiver<Job>,
        counters: &Counters,
        ready: mpsc::Sender<Result<(), String>>,
    ) {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(engine.context_tokens * engine.sequences))
            .with_n_batch(engine.batch_tokens)
            .with_n_ubatch(engine.batch_tokens)
            .with_n_seq_max(engine.sequences)
            .with_n_threads(engine.threads)
            .with_n_threads_batch(engine.threads)
            .with_kv_unified(true);
        let backend = match backend() {
            Ok(backend) => backend,
            Err(e) => return drop(ready.send(Err(e))),
        };
        let mut ctx = match model.new_context(backend, params) {
            Ok(ctx) => ctx,
            Err(e) => return drop(ready.send(Err(e.to_string()))),
        };
        let _ = ready.send(Ok(()));
        let mut slots: Vec<Slot> = (0..engine.sequences as i32)
            .map(|seq| Slot { seq, cached: Vec::new(), last_used: 0, active: None })
            .collect();
        let mut batch = LlamaBatch::new(engine.batch_tokens as usize, 1);
        let mut clock = 0u64;
        loop {
            let busy = slots.iter().any(|s| s.active.is_some());
            if !busy {
                match queue.recv() {
                    Ok(job) => admit(&mut ctx, model, &mut slots, job, &mut clock, counters),
                    Err(_) => return,
                }
            }
            while slots.iter().any(|s| s.active.is_none()) {
                match queue.try_recv() {
                    Ok(job) => admit(&mut ctx, model, &mut slots, job, &mut clock, counters),
                    Err(_) => break,
                }
            }
            step(&mut ctx, model, &mut slots, &mut batch, engine, counters);
        }
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Gives `job` a free sequence, starting from the longest prefix of its prompt already in
/// the cache: its own sequence's, or another's copied over.
fn admit(
    ctx: &mut LlamaContext,
    model: &LlamaModel,
    slots: &mut [Slot],
    job: Job,
    clock: &mut u64,
    counters: &Counters,
) {
    if job.events.is_closed() {
        return;
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let sampler = match sampler(model, job.sampling) {
        Ok(sampler) => sampler,
        Err(message) => return drop(job.events.send(EngineEvent::Failed(message))),
    };
    let Some(target) = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .max_by_key(|(_, s)| (common_prefix(&s.cached, &job.prompt), std::cmp::Reverse(s.last_used)))
        .map(|(i, _)| i)
    else {
        return drop(job.events.send(EngineEvent::Failed("no free sequence".into())));
    };
    let mut reuse = common_prefix(&slots[target].cached, &job.prompt);
    let donor = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(i, s)| (i, common_prefix(&s.cached, &job.prompt)))
        .max_by_key(|(_, n)| *n);
    if let Some((donor, shared)) = donor.filter(|(_, n)| *n >= reuse + MIN_SHARED_PREFIX) {
        let (src, dst) = (slots[donor].seq, slots[target].seq);
        let _ = ctx.clear_kv_cache_seq(Some(dst as u32), None, None);
        let _ = ctx.copy_kv_cache_seq(src, dst, Some(0), Some(shared as u32));
        slots[target].cached = slots[donor].cached[..shared].to_vec();
        reuse = shared;
    }
    // The last prompt token is always evaluated: its logits pick the first answer token.
    reuse = reuse.min(job.prompt.len().saturating_sub(1));
    let slot = &mut slots[target];
    if !matches!(ctx.clear_kv_cache_seq(Some(slot.seq as u32), Some(reuse as u32), None), Ok(true)) {
        let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
        reuse = 0;
    }
    slot.cached.truncate(reuse);
    counters.prompt_tokens_reused.fetch_add(reuse as u64, Ordering::Relaxed);
    *clock += 1;
    slot.last_used = *clock;
    slot.active = Some(Active {
        job,
        next_prompt: reuse,
        next_token: None,
        logits_at: None,
        sampler,
        reused: reuse,
        generated: 0,
        bytes: Vec::new(),
        text: String::new(),
        sent: 0,
    });
}

fn sampler(model: &LlamaModel, sampling: Sampling) -> Result<LlamaSampler, String> {
    let mut chain = Vec::new();
    if sampling.json {
        chain.push(LlamaSampler::grammar(model, grammar::JSON_OBJECT, grammar::ROOT).map_err(|e| e.to_string())?);
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::temp(sampling.temperature),
            LlamaSampler::dist(sampling.seed),
        ]);
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// One batch: the next token of every answering sequence, then prompt tokens of admitted
/// requests in the room left.
fn step(
    ctx: &mut LlamaContext,
    model: &LlamaModel,
    slots: &mut [Slot],
    batch: &mut LlamaBatch,
    engine: Engine,
    counters: &Counters,
) {
    // Callers that went away free their sequence now.
    for slot in slots.iter_mut() {
        if slot.active.as_ref().is_some_and(|a| a.job.events.is_closed()) {
            slot.active = None;
        }
    }
    batch.clear();
    let mut room = engine.batch_tokens as usize;
    let mut sequences = 0u64;
    for slot in slots.iter_mut() {
        let Some(active) = slot.active.as_mut() else { continue };
        active.logits_at = None;
        if let Some(token) = active.next_token.take() {
            let _ = batch.add(token, slot.cached.len() as i32, &[slot.seq], true);
            slot.cached.push(token);
            active.logits_at = Some(batch.n_tokens() - 1);
            room -= 1;
            sequences += 1;
        }
    }
    let mut evaluated = 0u64;
    for slot in slots.iter_mut() {
        let Some(active) = slot.active.as_mut() else { continue };
        let remaining = active.job.prompt.len() - active.next_prompt;
        if remaining == 0 || room == 0 {
            continue;
        }
        let take = remaining.min(room);
        for i in 0..take {
            let token = active.job.prompt[active.next_prompt + i];
            let last = active.next_prompt + i + 1 == active.job.prompt.len();
            let _ = batch.add(token, slot.cached.len() as i32, &[slot.seq], last);
            slot.cached.push(token);
            if last {
                active.logits_at = Some(batch.n_tokens() - 1);
            }
        }
        active.next_prompt += take;
        room -= take;
        evaluated += take as u64;
        sequences += 1;
    }
    if batch.n_tokens() == 0 {
        return;
    }
    if let Err(e) = ctx.decode(batch) {
        fail_batch(ctx, slots, &e);
        return;
    }
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.max_sequences_in_batch.fetch_max(sequences, Ordering::Relaxed);
    counters.prompt_tokens_evaluated.fetch_add(evaluated, Ordering::Relaxed);
    for slot in slots.iter_mut() {
        let Some(active) = slot.active.as_mut() else { continue };
        let Some(at) = active.logits_at else { continue };
        let token = active.sampler.sample(ctx, at);
        if let Some(reason) = advance(model, active, token, slot.cached.len(), engine.context_tokens) {
            let active = slot.active.take().expect("an active sequence");
            let generated = complete(active, reason);
            counters.completion_tokens.fetch_add(generated, Ordering::Relaxed);
        }
    }
}

/// Takes the sampled `token` into the answer. Returns why the answer ends, if it does.
fn advance(
    model: &LlamaModel,
    active: &mut Active,
    token: LlamaToken,
    position: usize,
    context_tokens: u32,
) -> Option<FinishReason> {
    if model.vocab().is_eog(token) {
        return Some(FinishReason::Stop);
    }
    active.generated += 1;
    // Special tokens are rendered too: Hermes call tags are tokens of their own.
    active.bytes.extend(model.vocab().token_to_piece(token, true, None));
    let valid = match std::str::from_utf8(&active.bytes) {
        Ok(text) => text.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Bytes that can never become UTF-8 are replaced rather than held forever.
        Err(_) => {
            let lossy = String::from_utf8_lossy(&active.bytes).into_owned();
            active.bytes = lossy.into_bytes();
            active.bytes.len()
        }
    };
    let piece: Vec<u8> = active.bytes.drain(..valid).collect();
    active.text.push_str(std::str::from_utf8(&piece).expect("checked as UTF-8"));
    if let Some(at) = active.job.stop.iter().filter_map(|stop| active.text.find(stop.as_str())).min() {
        active.text.truncate(at);
        return Some(FinishReason::Stop);
    }
    active.next_token = Some(token);
    if active.generated >= active.job.max_tokens || position + 1 >= context_tokens as usize {
        return Some(FinishReason::Length);
    }
    // Text that could still become a stop sequence waits.
    let hold = active.job.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
    let mut upto = active.text.len().saturating_sub(hold).max(active.sent);
    while !active.text.is_char_boundary(upto) {
        upto -= 1;
    }
    if upto > active.sent {
        let _ = active.job.events.send(EngineEvent::Text(active.text[active.sent..upto].to_owned()));
        active.sent = upto;
    }
    None
}

/// Sends the rest of the answer and its usage; returns the tokens it generated.
fn complete(active: Active, reason: FinishReason) -> u64 {
    if active.sent < active.text.len() {
        let _ = active.job.events.send(EngineEvent::Text(active.text[active.sent..].to_owned()));
    }
    let usage = Usage { prompt_tokens: active.job.prompt.len() as u64, completion_tokens: u64::from(active.generated) };
    tracing::debug!(
        prompt_tokens = usage.prompt_tokens,
        reused_tokens = active.reused,
        completion_tokens = usage.completion_tokens,
        "local answer finished"
    );
    let _ = active.job.events.send(EngineEvent::Done { usage, reason });
    usage.completion_tokens
}

/// A batch that could not be decoded fails the requests in it, whose sequences are
/// cleared; the engine goes on with the next requests.
fn fail_batch(ctx: &mut LlamaContext, slots: &mut [Slot], error: &DecodeError) {
    tracing::warn!(%error, "local model could not decode a batch");
    for slot in slots.iter_mut() {
        if let Some(active) = slot.active.take() {
            let _ = active.job.events.send(EngineEvent::Failed(format!("decode failed: {error}")));
        }
        let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
        slot.cached.clear();
    }
}

impl crate::tokens::TokenCounter for LocalModel {
    fn count(&self, text: &str) -> usize {
        let vocab = self.model.vocab();
        vocab.tokenize(text.as_bytes(), false, false).len()
    }

    /// Exact: the prompt rendered by the model's own template, tokenised as it will be run.
    fn count_request(&self, request: &ChatRequest) -> usize {
        match self.render(request) {
            Ok(prompt) => self.tokenize(&prompt).len(),
            Err(_) => request.messages.iter().map(|m| self.count(&m.content)).sum(),
        }
    }
}
