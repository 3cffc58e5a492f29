//! The model stack built from `[llm]`: each provider behind its retries and circuit
//! breaker, the fallback chain in configured order, the exact-match response cache around
//! it, and a small/large router on top when routing is configured. What is sent to a
//! provider outside the process first has the personal data `privacy.remote_models` names
//! replaced by placeholders.
//!
//! Invariant: every provider is built once and has exactly one breaker, however many
//! times it is named (primary, fallback, routing); an answer always says which model
//! actually gave it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concierge_guard::KindSet;
use concierge_llm::anthropic::{AnthropicConfig, AnthropicProvider};
use concierge_llm::cache::{CacheStats, CachedModel, MemoryCache};
use concierge_llm::openai::{OpenAiCompatible, OpenAiConfig};
use concierge_llm::resilience::{BreakerState, FallbackChain, ResilientModel};
use concierge_llm::routing::{ModelRouter, RouteDecision, RouteSignals};
use concierge_llm::{collect, ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, PriceTable};

use crate::config::{AnthropicProviderConfig, LlmConfig, OpenAiProviderConfig, ProviderConfig, Secrets};

/// `max_tokens_default` of Anthropic calls; requests from the answer path set their own.
const ANTHROPIC_MAX_TOKENS: u32 = 1024;

/// Why the model stack could not be built. Each message names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum LlmStartError {
    #[error("llm.providers.{provider}: {message}")]
    Local { provider: String, message: String },
    #[error("llm.providers.{provider}.api_key_env names {var}, which is not set in the environment")]
    MissingKey { provider: String, var: String },
    #[error("llm.{key}: {problem}")]
    Invalid { key: String, problem: String },
}

/// The providers offered as models of their own (`llm.gateway`), by name.
pub type GatewayModels = BTreeMap<String, Arc<ResilientModel>>;

/// A model's answer and who gave it.
#[derive(Debug, Clone)]
pub struct ModelAnswer {
    pub response: ChatResponse,
    /// The id of the model that actually answered, fallbacks included.
    pub model: String,
    /// How the request was routed, when routing is on.
    pub route: Option<RouteDecision>,
    /// Replayed from the response cache: no provider was called, nothing was spent.
    pub cached: bool,
}

/// The models configured under `[llm]`, ready to answer.
pub struct LlmStack {
    answering: Answering,
    providers: Vec<Arc<ResilientModel>>,
    cache: Option<Arc<MemoryCache>>,
    prices: PriceTable,
    max_answer_tokens: u32,
    deadline: Duration,
}

/// What answers a request: one chain, or a router between two.
enum Answering {
    Single(Arc<dyn ChatModel>),
    Routed(ModelRouter),
}

impl std::fmt::Debug for LlmStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: Vec<&str> = self.providers.iter().map(|p| p.id()).collect();
        f.debug_struct("LlmStack").field("providers", &providers).field("cached", &self.cache.is_some()).finish()
    }
}

impl LlmStack {
    /// Builds the providers `config` uses (loading a local model once, off the async
    /// threads) and stacks them: the agent's stack, `None` when its model is off
    /// (`provider = "none"`), and the gateway's models, which share the providers (and so
    /// the breakers) the agent uses too.
    pub async fn build(
        config: &LlmConfig,
        secrets: &Secrets,
        remote_redaction: KindSet,
    ) -> Result<(Option<Self>, GatewayModels), LlmStartError> {
        let deadline = Duration::from_secs(config.deadline_secs);
        let mut resilient = BTreeMap::new();
        for name in config.providers_in_use() {
            let mut provider = provider(config, secrets, name, deadline).await?;
            let remote =
                matches!(config.provider_config(name), Some(ProviderConfig::Openai(_) | ProviderConfig::Anthropic(_)));
            if remote && !remote_redaction.is_empty() {
                provider = Arc::new(RedactingModel { inner: provider, kinds: remote_redaction });
            }
            let model = ResilientModel::new(provider, config.retry.clone(), config.breaker.clone());
            resilient.insert(name.to_owned(), Arc::new(model));
        }
        let gateway = config.gateway.iter().map(|name| (name.clone(), Arc::clone(&resilient[name.as_str()]))).collect();
        if !config.enabled() {
            return Ok((None, gateway));
        }
        let cache = config.cache.enabled.then(|| Arc::new(MemoryCache::new(config.cache.max_entries)));
        let chain = |primary: &str| -> Arc<dyn ChatModel> {
            let member = |name: &str| -> Arc<dyn ChatModel> { Arc::new(ReportsAnswerer(Arc::clone(&resilient[name]))) };
            // Without fallbacks the provider's own error is the one reported, not `Exhausted`.
            let chain: Arc<dyn ChatModel> = if config.fallbacks.is_empty() {
                member(primary)
            } else {
                Arc::new(FallbackChain::new(member(primary), config.fallbacks.iter().map(|name| member(name))))
            };
            match &cache {
                Some(cache) => {
                    Arc::new(CachedModel::new(chain, cache.clone(), Duration::from_secs(config.cache.ttl_secs)))
                }
                None => chain,
            }
        };
        let answering = match &config.routing {
            None => Answering::Single(chain(config.small_provider())),
            Some(routing) => {
                let router =
                    ModelRouter::new(chain(config.small_provider()), chain(&routing.large), routing.rules.clone())
                        .map_err(|problem| LlmStartError::Invalid { key: "routing".into(), problem })?;
                Answering::Routed(router)
            }
        };
        for model in resilient.values() {
            tracing::info!(model = model.id(), "model provider ready");
        }
        let stack = Self {
            answering,
            providers: resilient.into_values().collect(),
            cache,
            prices: config.prices.clone(),
            max_answer_tokens: config.max_answer_tokens,
            deadline,
        };
        Ok((Some(stack), gateway))
    }

    /// Answers `request` with the configured models, routed by `signals` when routing is
    /// on, and reports which model answered. Errors are the last model's, or `Exhausted`.
    pub async fn answer(&self, request: &ChatRequest, signals: &RouteSignals) -> Result<ModelAnswer, LlmError> {
        let started = std::time::Instant::now();
        let answer = ANSWERED_BY.scope(RefCell::new(None), self.answer_tracked(request, signals)).await;
        crate::telemetry::stage("llm", started.elapsed().as_secs_f64());
        answer
    }

    async fn answer_tracked(&self, request: &ChatRequest, signals: &RouteSignals) -> Result<ModelAnswer, LlmError> {
        let (route, front_id, events) = match &self.answering {
            Answering::Single(model) => (None, model.id().to_owned(), model.stream(request).await?),
            Answering::Routed(router) => {
                let (decision, id, events) = router.stream(signals, request).await?;
                (Some(decision), id, events)
            }
        };
        let response = collect(events).await?;
        let answered_by = ANSWERED_BY.with(RefCell::take);
        // Only a cache hit reaches no provider, so only then is nobody reported.
        let cached = self.cache.is_some() && answered_by.is_none();
        Ok(ModelAnswer { response, model: answered_by.unwrap_or(front_id), route, cached })
    }

    /// The price table of `[llm.prices]`.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// The longest answer a request should ask for, in tokens.
    pub fn max_answer_tokens(&self) -> u32 {
        self.max_answer_tokens
    }

    /// The per-call deadline of HTTP providers.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Where each provider's circuit breaker stands, by model id.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.providers.iter().map(|p| (p.id().to_owned(), p.breaker().state())).collect()
    }

    /// Hits, misses and entries of the response cache, when it is on.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }
}

tokio::task_local! {
    /// The id of the provider that started the answer being given in this task.
    static ANSWERED_BY: RefCell<Option<String>>;
}

/// A provider that, when it starts an answer, records itself as the one answering. In a
/// fallback chain each model that starts overwrites the one before, so the last written
/// is the model whose answer is handed out.
struct ReportsAnswerer(Arc<ResilientModel>);

#[async_trait::async_trait]
impl ChatModel for ReportsAnswerer {
    fn id(&self) -> &str {
        self.0.id()
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let events = self.0.stream(request).await?;
        // Outside `LlmStack::answer` there is nobody to tell.
        let _ = ANSWERED_BY.try_with(|answered| *answered.borrow_mut() = Some(self.0.id().to_owned()));
        Ok(events)
    }
}

/// A provider outside the process, sent every message with the personal data of `kinds`
/// replaced by placeholders.
pub struct RedactingModel {
    pub inner: Arc<dyn ChatModel>,
    pub kinds: KindSet,
}

#[async_trait::async_trait]
impl ChatModel for RedactingModel {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let scanner = concierge_guard::scanner();
        let mut redacted = request.clone();
        for message in &mut redacted.messages {
            if let std::borrow::Cow::Owned(text) = scanner.redact(&message.content, self.kinds) {
                message.content = text;
            }
        }
        self.inner.stream(&redacted).await
    }
}

/// The provider called `name`, built.
async fn provider(
    config: &LlmConfig,
    secrets: &Secrets,
    name: &str,
    deadline: Duration,
) -> Result<Arc<dyn ChatModel>, LlmStartError> {
    let Some(provider) = config.provider_config(name) else {
        let problem = format!("names `{name}`, which is not a provider");
        return Err(LlmStartError::Invalid { key: "provider".into(), problem });
    };
    match provider {
        #[cfg(feature = "local")]
        ProviderConfig::Local(local) => load_local(name, local).await,
        ProviderConfig::Openai(openai) => Ok(Arc::new(openai_provider(secrets, name, openai, deadline)?)),
        ProviderConfig::Anthropic(anthropic) => Ok(Arc::new(anthropic_provider(secrets, name, anthropic, deadline)?)),
    }
}

fn openai_provider(
    secrets: &Secrets,
    name: &str,
    config: OpenAiProviderConfig,
    deadline: Duration,
) -> Result<OpenAiCompatible, LlmStartError> {
    let api_key = match &config.api_key_env {
        Some(var) => Some(key(secrets, name, var)?),
        None => None,
    };
    Ok(OpenAiCompatible::new(OpenAiConfig { base_url: config.base_url, api_key, model: config.model, deadline }))
}

fn anthropic_provider(
    secrets: &Secrets,
    name: &str,
    config: AnthropicProviderConfig,
    deadline: Duration,
) -> Result<AnthropicProvider, LlmStartError> {
    let api_key = key(secrets, name, &config.api_key_env)?;
    Ok(AnthropicProvider::new(AnthropicConfig {
        base_url: config.base_url,
        api_key,
        model: config.model,
        deadline,
        max_tokens_default: ANTHROPIC_MAX_TOKENS,
    }))
}

fn key(secrets: &Secrets, provider: &str, var: &str) -> Result<secrecy::SecretString, LlmStartError> {
    secrets
        .llm_key(var)
        .cloned()
        .ok_or_else(|| LlmStartError::MissingKey { provider: provider.to_owned(), var: var.to_owned() })
}

/// Loads the GGUF model on a blocking thread: reading and mapping the weights takes
/// seconds and must not stall the runtime.
#[cfg(feature = "local")]
async fn load_local(
    name: &str,
    config: concierge_llm::local::LocalModelConfig,
) -> Result<Arc<dyn ChatModel>, LlmStartError> {
    let fail = |message: String| LlmStartError::Local { provider: name.to_owned(), message };
    let loaded = tokio::task::spawn_blocking(move || concierge_llm::local::LocalModel::load(config))
        .await
        .map_err(|e| fail(format!("loading stopped unexpectedly: {e}")))?;
    let model = loaded.map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(model))
}
