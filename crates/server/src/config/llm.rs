//! The `[llm]` section: which provider answers, which take over when it fails, and what
//! surrounds each call (deadline, retries, circuit breakers, the response cache, routing
//! between a small and a large model, prices).
//!
//! Invariant: keys never come from the file. A provider names the environment variable that
//! holds its key (`api_key_env`); an `api_key` written in the file is refused by name, and
//! its value is dropped unread so that no error message or log can repeat it.

use std::collections::BTreeMap;

#[cfg(feature = "local")]
use concierge_llm::local::LocalModelConfig;
use concierge_llm::resilience::{BreakerConfig, RetryPolicy};
use concierge_llm::routing::RoutingRules;
use concierge_llm::PriceTable;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `provider` that switches the model off: answers are then quoted from the knowledge
/// base only.
pub const NO_MODEL: &str = "none";

/// The provider name that needs no `[llm.providers.…]` table: the embedded model with its
/// default settings.
pub const LOCAL: &str = "local";

/// `[llm]`. Missing keys take their defaults: the embedded local model (no model in a build
/// without it), no fallbacks, a 60 s deadline, the default retry policy and breaker, the
/// response cache on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The provider that answers: a name under `providers`, `local` (the embedded model,
    /// configured or not), or `none`.
    pub provider: String,
    /// Providers tried in order when the one before failed with a passing error or its
    /// circuit breaker is open.
    pub fallbacks: Vec<String>,
    /// Deadline of one call to an HTTP provider, stream included, in seconds. The answer as
    /// a whole is also held to the request's deadline.
    pub deadline_secs: u64,
    /// Longest answer a model may write, in tokens.
    pub max_answer_tokens: u32,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Retries of one provider (durations as milliseconds or `"200ms"`, `"5s"`).
    #[serde(skip_serializing)]
    pub retry: RetryPolicy,
    /// One circuit breaker per provider, each with these settings.
    #[serde(skip_serializing)]
    pub breaker: BreakerConfig,
    /// The exact-match response cache.
    pub cache: ResponseCacheConfig,
    /// Small and large model, chosen per request by rules. Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingConfig>,
    /// US dollars per million tokens, by model id (`provider/model`); unpriced models cost 0.
    pub prices: PriceTable,
    /// Providers offered as models of their own at `/v1/chat/completions` and `/v1/models`,
    /// by their name under `providers`: requests naming one go straight to it, through its
    /// retries and circuit breaker, without the agent. None by default.
    pub gateway: Vec<String>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: if cfg!(feature = "local") { LOCAL } else { NO_MODEL }.into(),
            fallbacks: Vec::new(),
            deadline_secs: 60,
            max_answer_tokens: 512,
            providers: BTreeMap::new(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            cache: ResponseCacheConfig::default(),
            routing: None,
            prices: PriceTable::default(),
            gateway: Vec::new(),
        }
    }
}

/// `names` without repeats, in the order first named.
fn unique(mut names: Vec<&str>) -> Vec<&str> {
    let mut seen = Vec::new();
    names.retain(|name| {
        let first = !seen.contains(name);
        seen.push(*name);
        first
    });
    names
}

/// `[llm.providers.NAME]`: one provider, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderConfig {
    /// The embedded GGUF model, run in-process.
    #[cfg(feature = "local")]
    Local(LocalModelConfig),
    /// Any server speaking OpenAI's chat completions API.
    Openai(OpenAiProviderConfig),
    /// Anthropic's Messages API.
    Anthropic(AnthropicProviderConfig),
}

/// `kind = "openai"`: OpenAI, vLLM, llama.cpp's server, Ollama, TGI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiProviderConfig {
    /// The API root up to and including `/v1`.
    #[serde(default = "openai_base_url")]
    pub base_url: String,
    /// The pinned model id, e.g. `gpt-4o-mini-2024-07-18`; required.
    #[serde(default)]
    pub model: String,
    /// The name of the environment variable holding the bearer token; servers on the
    /// machine often need none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Refused when present; see [`KeyInFile`].
    #[serde(default, skip_serializing)]
    pub api_key: Option<KeyInFile>,
}

/// `kind = "anthropic"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicProviderConfig {
    /// The API root; `/v1/messages` is appended.
    #[serde(default = "anthropic_base_url")]
    pub base_url: String,
    /// The pinned model id, e.g. `claude-3-5-haiku-20241022`; required.
    #[serde(default)]
    pub model: String,
    /// The name of the environment variable holding the key; Anthropic always needs one.
    #[serde(default = "anthropic_key_env")]
    pub api_key_env: String,
    /// Refused when present; see [`KeyInFile`].
    #[serde(default, skip_serializing)]
    pub api_key: Option<KeyInFile>,
}

fn openai_base_url() -> String {
    "https://api.openai.com/v1".into()
}

fn anthropic_base_url() -> String {
    "https://api.anthropic.com".into()
}

fn anthropic_key_env() -> String {
    "ANTHROPIC_API_KEY".into()
}

/// A key someone wrote into the file. Only its presence is kept: the value is skipped
/// while reading, so it is in no error, log line or `Debug` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInFile;

impl<'de> Deserialize<'de> for KeyInFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(KeyInFile)
    }
}

/// `[llm.cache]`: complete answers to deterministic requests (temperature 0), kept in
/// memory and keyed by the model and the whole request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseCacheConfig {
    pub enabled: bool,
    /// Answers kept; the oldest goes first when full.
    pub max_entries: usize,
    /// How long an answer is served from the cache, in seconds.
    pub ttl_secs: u64,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self { enabled: true, max_entries: 1000, ttl_secs: 3600 }
    }
}

/// `[llm.routing]`: `small` (default: `llm.provider`) and `large` providers, and the
/// `RoutingRules` fields alongside them in the same table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RoutingTable", into = "RoutingTable")]
pub struct RoutingConfig {
    pub small: Option<String>,
    pub large: String,
    pub rules: RoutingRules,
}

/// `[llm.routing]` as written: the provider names and the rules in one table. The rules
/// are read from what is left, so a misspelt rule is refused as unknown rather than
/// ignored.
#[derive(Serialize, Deserialize)]
struct RoutingTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    small: Option<String>,
    large: String,
    #[serde(flatten)]
    rules: Map<String, Value>,
}

impl TryFrom<RoutingTable> for RoutingConfig {
    type Error = String;

    fn try_from(table: RoutingTable) -> Result<Self, String> {
        let rules = RoutingRules::deserialize(Value::Object(table.rules)).map_err(|e| e.to_string())?;
        Ok(Self { small: table.small, large: table.large, rules })
    }
}

impl From<RoutingConfig> for RoutingTable {
    fn from(config: RoutingConfig) -> Self {
        let rules = match serde_json::to_value(config.rules) {
            Ok(Value::Object(rules)) => rules,
            // The rules are a struct of plain values and always serialise to an object.
            _ => Map::new(),
        };
        Self { small: config.small, large: config.large, rules }
    }
}

/// A bad `[llm]` setting: the full key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub problem: String,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid { key: key.into(), problem: problem.into() }
}

impl LlmConfig {
    /// Whether a model answers at all.
    pub fn enabled(&self) -> bool {
        self.provider != NO_MODEL
    }

    /// The provider called `name`: its table, or for `local` without one the embedded
    /// model's defaults. `None` for a name that is neither.
    pub fn provider_config(&self, name: &str) -> Option<ProviderConfig> {
        match self.providers.get(name) {
            Some(config) => Some(config.clone()),
            #[cfg(feature = "local")]
            None if name == LOCAL => Some(ProviderConfig::Local(LocalModelConfig::default())),
            None => None,
        }
    }

    /// Whether every provider that may answer is a remote API (OpenAI-compatible or
    /// Anthropic): models strong enough to choose tools. False when the model is off.
    pub fn remote_only(&self) -> bool {
        let names = self.agent_providers();
        !names.is_empty()
            && names.iter().all(|name| {
                matches!(self.provider_config(name), Some(ProviderConfig::Openai(_) | ProviderConfig::Anthropic(_)))
            })
    }

    /// The small model's provider when routing: `routing.small`, else `provider`.
    pub fn small_provider(&self) -> &str {
        self.routing.as_ref().and_then(|routing| routing.small.as_deref()).unwrap_or(&self.provider)
    }

    /// The providers the agent may call, each once, in the order first named: the
    /// primary, the fallbacks, then the large model. Empty when the model is off.
    pub fn agent_providers(&self) -> Vec<&str> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut names: Vec<&str> = vec![self.small_provider()];
        names.extend(self.fallbacks.iter().map(String::as_str));
        names.extend(self.routing.as_ref().map(|routing| routing.large.as_str()));
        unique(names)
    }

    /// Every provider that may be called: the agent's, then the gateway's, each once.
    pub fn providers_in_use(&self) -> Vec<&str> {
        let mut names = self.agent_providers();
        names.extend(self.gateway.iter().map(String::as_str));
        unique(names)
    }

    /// The environment variables holding the keys of every configured provider.
    pub fn key_variables(&self) -> Vec<&str> {
        self.providers.values().filter_map(ProviderConfig::api_key_env).collect()
    }

    /// Checks the section; `key_is_set` says whether an environment variable holds a key.
    /// Every provider table is checked for its shape; only providers in use must have
    /// their key in the environment.
    pub fn validate(&self, key_is_set: impl Fn(&str) -> bool) -> Result<(), Invalid> {
        if !(1..=600).contains(&self.deadline_secs) {
            return Err(invalid("llm.deadline_secs", format!("is {}; expected 1 to 600", self.deadline_secs)));
        }
        if !(1..=32_768).contains(&self.max_answer_tokens) {
            let problem = format!("is {}; expected 1 to 32768", self.max_answer_tokens);
            return Err(invalid("llm.max_answer_tokens", problem));
        }
        for (name, provider) in &self.providers {
            validate_provider(name, provider)?;
        }
        self.validate_names()?;
        for name in self.providers_in_use() {
            let Some(var) = self.providers.get(name).and_then(ProviderConfig::api_key_env) else { continue };
            if !key_is_set(var) {
                return Err(invalid(
                    format!("llm.providers.{name}.api_key_env"),
                    format!("names {var}, which is not set in the environment"),
                ));
            }
        }
        self.validate_cache()?;
        if let Some(routing) = &self.routing {
            routing.rules.validate().map_err(|message| nested_key("llm.", &message))?;
        }
        self.prices.validate().map_err(|message| nested_key("llm.", &message))
    }

    /// Every provider named in `provider`, `fallbacks`, `routing` and `gateway` exists.
    fn validate_names(&self) -> Result<(), Invalid> {
        for (i, name) in self.gateway.iter().enumerate() {
            self.require_provider("llm.gateway", name)?;
            if self.gateway[..i].contains(name) {
                return Err(invalid("llm.gateway", format!("lists `{name}` more than once")));
            }
        }
        if !self.enabled() {
            if !self.fallbacks.is_empty() {
                return Err(invalid("llm.fallbacks", "lists providers, but llm.provider is none"));
            }
            if self.routing.is_some() {
                return Err(invalid("llm.routing", "is set, but llm.provider is none"));
            }
            return Ok(());
        }
        self.require_provider("llm.provider", &self.provider)?;
        for (i, name) in self.fallbacks.iter().enumerate() {
            self.require_provider("llm.fallbacks", name)?;
            if name == &self.provider || self.fallbacks[..i].contains(name) {
                return Err(invalid("llm.fallbacks", format!("lists `{name}` more than once (with llm.provider)")));
            }
        }
        if let Some(routing) = &self.routing {
            if let Some(small) = &routing.small {
                self.require_provider("llm.routing.small", small)?;
            }
            self.require_provider("llm.routing.large", &routing.large)?;
        }
        Ok(())
    }

    fn require_provider(&self, key: &str, name: &str) -> Result<(), Invalid> {
        if self.provider_config(name).is_some() {
            return Ok(());
        }
        let mut known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        if cfg!(feature = "local") && !known.contains(&LOCAL) {
            known.push(LOCAL);
        }
        let problem = if name == LOCAL {
            "is `local`, but this build has no embedded model; choose another provider or `none`".to_owned()
        } else {
            format!("names `{name}`, which is not a provider; expected one of: {}", known.join(", "))
        };
        Err(invalid(key, problem))
    }

    fn validate_cache(&self) -> Result<(), Invalid> {
        let cache = &self.cache;
        if cache.enabled && !(1..=1_000_000).contains(&cache.max_entries) {
            return Err(invalid("llm.cache.max_entries", format!("is {}; expected 1 to 1000000", cache.max_entries)));
        }
        if cache.enabled && cache.ttl_secs == 0 {
            return Err(invalid("llm.cache.ttl_secs", "is 0; expected at least 1 (or enabled = false)"));
        }
        Ok(())
    }
}

impl ProviderConfig {
    /// The pinned model id, without the provider prefix.
    pub fn model(&self) -> &str {
        match self {
            #[cfg(feature = "local")]
            ProviderConfig::Local(local) => &local.model,
            ProviderConfig::Openai(openai) => &openai.model,
            ProviderConfig::Anthropic(anthropic) => &anthropic.model,
        }
    }

    /// The environment variable holding the key, if the provider uses one.
    pub fn api_key_env(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "local")]
            ProviderConfig::Local(_) => None,
            ProviderConfig::Openai(openai) => openai.api_key_env.as_deref(),
            ProviderConfig::Anthropic(anthropic) => Some(&anthropic.api_key_env),
        }
    }

    /// The HTTP API root, for the providers reached over HTTP.
    fn base_url(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "local")]
            ProviderConfig::Local(_) => None,
            ProviderConfig::Openai(openai) => Some(&openai.base_url),
            ProviderConfig::Anthropic(anthropic) => Some(&anthropic.base_url),
        }
    }

    fn key_in_file(&self) -> bool {
        match self {
            #[cfg(feature = "local")]
            ProviderConfig::Local(_) => false,
            ProviderConfig::Openai(openai) => openai.api_key.is_some(),
            ProviderConfig::Anthropic(anthropic) => anthropic.api_key.is_some(),
        }
    }
}

/// One provider's table: a name that is not `none`, a pinned model, an HTTP(S) root
/// without credentials, and a key only by the name of its variable.
fn validate_provider(name: &str, provider: &ProviderConfig) -> Result<(), Invalid> {
    let key = |field: &str| format!("llm.providers.{name}.{field}");
    if name == NO_MODEL {
        return Err(invalid(format!("llm.providers.{name}"), "uses the reserved name `none`; choose another name"));
    }
    if provider.model().trim().is_empty() {
        return Err(invalid(key("model"), "is empty; pin a model id, e.g. gpt-4o-mini-2024-07-18"));
    }
    if provider.key_in_file() {
        return Err(invalid(
            key("api_key"),
            "is written in the file; keys come from the environment only: \
             put it in a variable and name that variable in api_key_env",
        ));
    }
    if let Some(var) = provider.api_key_env() {
        if !is_variable_name(var) {
            // The value is not repeated: it may be the key itself, written in the wrong place.
            return Err(invalid(key("api_key_env"), "is not an environment variable name such as OPENAI_API_KEY"));
        }
    }
    if let Some(url) = provider.base_url() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(key("base_url"), format!("is `{url}`; expected an http:// or https:// URL")));
        }
        if url.split_once("://").and_then(|(_, rest)| rest.split('/').next()).is_some_and(|host| host.contains('@')) {
            return Err(invalid(key("base_url"), "holds credentials; name the key's variable in api_key_env"));
        }
    }
    Ok(())
}

/// `A-Z`, digits and `_`, not starting with a digit: what a shell accepts as a name.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A message of the form `key rest` (as `RoutingRules::validate` and `PriceTable::validate`
/// write them), with the key placed under `prefix`.
fn nested_key(prefix: &str, message: &str) -> Invalid {
    match message.split_once(' ') {
        Some((key, problem)) => invalid(format!("{prefix}{key}"), problem),
        None => invalid(prefix.trim_end_matches('.'), message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> LlmConfig {
        toml::from_str(toml).expect("parses")
    }

    fn problem(config: &LlmConfig) -> Invalid {
        config.validate(|_| true).expect_err("invalid")
    }

    #[test]
    fn missing_section_means_the_embedded_model_when_built_in() {
        let config = LlmConfig::default();
        assert!(config.validate(|_| false).is_ok());
        if cfg!(feature = "local") {
            assert_eq!(config.providers_in_use(), ["local"]);
        } else {
            assert!(!config.enabled());
            let local = LlmConfig { provider: LOCAL.into(), ..LlmConfig::default() };
            assert_eq!(problem(&local).key, "llm.provider");
        }
    }

    #[test]
    fn providers_parse_by_kind_and_routing_reads_its_rules() {
        let config = parse(
            r#"
            provider = "openai"
            fallbacks = ["claude"]
            [providers.openai]
            kind = "openai"
            base_url = "http://127.0.0.1:8000/v1"
            model = "qwen2.5-7b-instruct"
            [providers.claude]
            kind = "anthropic"
            model = "claude-3-5-haiku-20241022"
            [routing]
            large = "claude"
            min_confidence = 0.5
            "#,
        );
        let ProviderConfig::Anthropic(claude) = &config.providers["claude"] else { panic!("anthropic") };
        assert_eq!(claude.api_key_env, "ANTHROPIC_API_KEY");
        let routing = config.routing.as_ref().expect("routing");
        assert_eq!(routing.rules.min_confidence, 0.5);
        assert_eq!(routing.rules.max_small_prompt_chars, 4000, "other rules keep their defaults");
        assert_eq!(config.providers_in_use(), ["openai", "claude"]);
        assert!(config.validate(|_| true).is_ok());
    }

    #[test]
    fn a_misspelt_routing_rule_is_refused() {
        let err = toml::from_str::<LlmConfig>("[routing]\nlarge = \"x\"\nmin_confidense = 0.5\n").unwrap_err();
        assert!(err.to_string().contains("min_confidense"), "{err}");
    }

    #[test]
    fn a_key_in_the_file_is_refused_without_repeating_it() {
        let config =
            parse("provider = \"o\"\n[providers.o]\nkind = \"openai\"\nmodel = \"m\"\napi_key = \"sk-secret-123\"\n");
        assert!(!format!("{config:?}").contains("sk-secret-123"));
        let err = problem(&config);
        assert_eq!(err.key, "llm.providers.o.api_key");
        let config =
            parse("provider = \"o\"\n[providers.o]\nkind = \"openai\"\nmodel = \"m\"\napi_key_env = \"sk-x\"\n");
        let err = problem(&config);
        assert_eq!(err.key, "llm.providers.o.api_key_env");
        assert!(!err.problem.contains("sk-x"));
    }

    #[test]
    fn rule_and_price_errors_are_placed_under_llm() {
        let mut config =
            parse("provider = \"none\"\n[prices.\"openai/x\"]\ninput_per_million = -1\noutput_per_million = 0\n");
        assert_eq!(problem(&config).key, "llm.prices.\"openai/x\".input_per_million");
        config = parse("provider = \"o\"\n[providers.o]\nkind = \"openai\"\nmodel = \"m\"\n[routing]\nlarge = \"o\"\nmin_confidence = 2.0\n");
        assert_eq!(problem(&config).key, "llm.routing.min_confidence");
    }

    #[test]
    fn variable_names_are_shell_names() {
        assert!(is_variable_name("OPENAI_API_KEY") && is_variable_name("_K1"));
        assert!(!is_variable_name("") && !is_variable_name("1KEY") && !is_variable_name("sk-abc"));
    }
}
