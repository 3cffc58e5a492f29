//! Configuration: one TOML file, then `CONCIERGE_…` environment variables on top, then the
//! secrets, which come only from the environment.
//!
//! Everything is checked before anything starts: a bad value names the file (or variable),
//! the key and what was expected, and the process exits non-zero.

mod auth;
mod knowledge;
mod limits;
mod llm;
mod privacy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use concierge_agent::{BackendSpec, ToolRegistry, ToolSpec};
use concierge_core::TenantId;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use auth::{AuthConfig, JwtAlgorithm, JwtIssuerConfig, MIN_KEY_CHARS, MIN_SECRET_BYTES};
pub use knowledge::{EmbedderConfig, KnowledgeConfig, TenantKnowledgeConfig};
pub use limits::{Quota, RateLimitConfig, TierLimits};
pub use llm::{
    AnthropicProviderConfig, KeyInFile, LlmConfig, OpenAiProviderConfig, ProviderConfig, ResponseCacheConfig,
    RoutingConfig, LOCAL, NO_MODEL,
};
pub use privacy::PrivacyConfig;

/// The whole configuration of one Concierge process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tenant: TenantConfig,
    pub knowledge: KnowledgeConfig,
    /// Which intent a message expresses: the intents file and the router's thresholds.
    pub router: concierge_agent::RouterConfig,
    /// The support agent: specialists, memory, escalation, limits.
    pub agent: concierge_agent::AgentConfig,
    pub log: LogConfig,
    /// The language model: providers, fallbacks, resilience, cache, routing, prices.
    pub llm: LlmConfig,
    /// The company's APIs, by name: base URL and the variable holding the token.
    pub backends: BTreeMap<String, BackendSpec>,
    /// Declared tools (see `concierge_agent::ToolSpec`), in the order they are tried.
    pub tools: Vec<ToolSpec>,
    /// Asynchronous jobs: the queue, its workers, priorities and webhooks.
    pub jobs: JobsConfig,
    /// The web chat and the operator console.
    pub web: WebConfig,
    /// Who may call the API: keys from the environment, JWT issuers.
    pub auth: AuthConfig,
    /// Token buckets per key, end user and address, by tier; shared through Redis when
    /// `REDIS_URL` is set.
    pub rate_limits: RateLimitConfig,
    /// Which kinds of personal data are redacted in logs, stored messages, requests to
    /// remote models and replies.
    pub privacy: PrivacyConfig,
    #[serde(skip)]
    pub secrets: Secrets,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// A folder with the company's own copy of the pages' files (`chat.html`,
    /// `console.html`, `style.css`, …), served instead of the built-in ones, file by file.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at once by this process; 0 accepts and stores jobs without running them.
    pub workers: usize,
    /// Jobs waiting at most; beyond it, `POST /v1/jobs` answers 429 with `Retry-After`.
    pub queue_capacity: usize,
    /// A job's priority by its tenant's tier: higher runs first.
    pub tier_priority: BTreeMap<String, i32>,
    /// Attempts of a job whose turn fails before it is marked failed.
    pub max_attempts: i32,
    /// The variable holding the secret webhooks are signed with (HMAC-SHA256); without it,
    /// jobs cannot ask for a webhook.
    pub webhook_secret_env: String,
    pub webhook_timeout_secs: u64,
    /// Deliveries tried before a webhook is given up (logged).
    pub webhook_attempts: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        let tiers = [("free", 0), ("basic", 1), ("standard", 1), ("premium", 2), ("enterprise", 3)];
        Self {
            workers: 2,
            queue_capacity: 256,
            tier_priority: tiers.into_iter().map(|(tier, p)| (tier.to_owned(), p)).collect(),
            max_attempts: 3,
            webhook_secret_env: "CONCIERGE_WEBHOOK_SECRET".into(),
            webhook_timeout_secs: 10,
            webhook_attempts: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Longest customer message accepted, in characters; longer ones get 422.
    pub max_message_chars: usize,
    /// Deadline for one request, in seconds.
    pub request_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A request's head must arrive within this many seconds; an HTTP/1 connection idle
    /// this long between requests is closed.
    pub header_timeout_secs: u64,
    /// On shutdown, how long connections may take to finish before they are dropped.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://…`. A URL with a password must come from the
    /// `DATABASE_URL` environment variable, never from the file.
    pub url: String,
}

/// The company this process serves until multi-tenant keys arrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    pub id: TenantId,
    pub name: String,
    /// Its service tier (a key of `jobs.tier_priority`): its jobs' priority.
    pub tier: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (one object per line) or `pretty`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `concierge_server=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Secrets, read from the environment only and never printed (`Debug` shows `[REDACTED]`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `DATABASE_URL`: overrides `store.url` and may carry a password.
    pub database_url: Option<SecretString>,
    /// Model and embeddings providers' keys, by the name of the variable that held them
    /// (`api_key_env`).
    pub llm_keys: BTreeMap<String, SecretString>,
    /// The secret webhooks are signed with (`jobs.webhook_secret_env`).
    pub webhook_secret: Option<SecretString>,
    /// `auth.admin_key_env`: a key of role admin accepted without being stored.
    pub admin_key: Option<SecretString>,
    /// `auth.widget_key_env`: the key the built-in chat page carries.
    pub widget_key: Option<SecretString>,
    /// `auth.session_secret_env`: signs conversation tokens.
    pub session_secret: Option<SecretString>,
    /// The HS256 secrets of JWT issuers, by the name of the variable that held them.
    pub jwt_secrets: BTreeMap<String, SecretString>,
    /// `REDIS_URL`: where rate limits are shared between processes (it may hold a password).
    pub redis_url: Option<SecretString>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            max_message_chars: 4_000,
            request_timeout_secs: 30,
            max_connections: 16_384,
            header_timeout_secs: 30,
            drain_secs: 30,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: "sqlite://data/concierge.db".into() }
    }
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            id: TenantId::try_from("default".to_owned()).expect("`default` is a valid tenant id"),
            name: "Default".into(),
            tier: "standard".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".into() }
    }
}

/// A configuration that cannot be used. The message names the source, the key and what was
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: key `{key}` {problem} (source: {source_name})")]
    Value { key: String, problem: String, source_name: String },
    #[error("invalid configuration: {problem} (source: {source_name})")]
    Tools { problem: String, source_name: String },
}

impl Config {
    /// Loads `file` (if given; it must then exist), applies `CONCIERGE_SECTION__KEY`
    /// environment variables (e.g. `CONCIERGE_SERVER__BIND=0.0.0.0:8080`), reads the secrets
    /// from the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `SECTION__KEY` variables are configuration; other `CONCIERGE_` variables
        // (ports of the demo, the models folder) belong to other parts of the program.
        figment = figment.merge(Env::prefixed("CONCIERGE_").split("__").filter(|key| key.as_str().contains('.')));
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.secrets = Secrets::from_env(&config);
        config.validate(file)?;
        Ok(config)
    }

    /// The store URL to use: `DATABASE_URL` if set, else `store.url`.
    pub fn store_url(&self) -> String {
        match &self.secrets.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => self.store.url.clone(),
        }
    }

    fn validate(&self, file: Option<&Path>) -> Result<(), ConfigError> {
        let source_name = file.map_or_else(|| "defaults and environment".to_owned(), |p| p.display().to_string());
        let fail = |key: &str, problem: String| {
            Err(ConfigError::Value { key: key.to_owned(), problem, source_name: source_name.clone() })
        };
        let s = &self.server;
        if !(1024..=16 * 1024 * 1024).contains(&s.max_body_bytes) {
            return fail("server.max_body_bytes", format!("is {}; expected 1024 to 16777216 bytes", s.max_body_bytes));
        }
        if !(1..=100_000).contains(&s.max_message_chars) {
            return fail("server.max_message_chars", format!("is {}; expected 1 to 100000", s.max_message_chars));
        }
        if !(1..=3600).contains(&s.request_timeout_secs) {
            return fail("server.request_timeout_secs", format!("is {}; expected 1 to 3600", s.request_timeout_secs));
        }
        if !(1..=1_000_000).contains(&s.max_connections) {
            return fail("server.max_connections", format!("is {}; expected 1 to 1000000", s.max_connections));
        }
        if !(1..=600).contains(&s.header_timeout_secs) {
            return fail("server.header_timeout_secs", format!("is {}; expected 1 to 600", s.header_timeout_secs));
        }
        if s.drain_secs > 3600 {
            return fail("server.drain_secs", format!("is {}; expected 0 to 3600", s.drain_secs));
        }
        let url = &self.store.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return fail("store.url", format!("is `{url}`; expected sqlite://PATH or postgres://…"));
        }
        if has_password(url) {
            return fail(
                "store.url",
                "holds a password; put credentials in the DATABASE_URL environment variable".into(),
            );
        }
        if let Err((key, problem)) = self.knowledge.validate() {
            return fail(&key, problem);
        }
        if let Some(var) = self.knowledge.key_variable() {
            if !self.secrets.llm_keys.contains_key(var) {
                return fail("knowledge.embedder.api_key_env", format!("names `{var}`, which is not set"));
            }
        }
        if let Err(error) = self.router.check() {
            return fail("router", error.to_string());
        }
        for specialist in &self.agent.specialists {
            if !specialist.prompt.is_file() {
                let key = format!("agent.specialists.{}.prompt", specialist.name);
                return fail(&key, format!("is `{}`, which is not a file", specialist.prompt.display()));
            }
        }
        if let Some(intents) = self.router.intents.as_ref().filter(|p| !p.is_file()) {
            return fail("router.intents", format!("is `{}`, which is not a file", intents.display()));
        }
        if self.log.level.parse::<tracing_level::Filter>().is_err() {
            return fail("log.level", format!("is `{}`; expected a filter such as `info` or `debug`", self.log.level));
        }
        if let Err(invalid) = self.llm.validate(|var| self.secrets.llm_keys.contains_key(var)) {
            return fail(&invalid.key, invalid.problem);
        }
        if self.llm.gateway.contains(&self.agent.name) {
            return fail(
                "llm.gateway",
                format!("lists `{}`, the agent's own name (agent.name); a model name means one thing", self.agent.name),
            );
        }
        if self.agent.function_calling == concierge_agent::support::FunctionCalling::Native && !self.llm.enabled() {
            return fail(
                "agent.function_calling",
                "is `native`, which needs a model, but llm.provider is `none`".into(),
            );
        }
        if self.router.llm != concierge_agent::LlmRouting::Off && !self.llm.enabled() {
            return fail(
                "router.llm",
                format!("is `{:?}`, which needs a model, but llm.provider is `none`", self.router.llm).to_lowercase(),
            );
        }
        let auth = &self.auth;
        for (key, var, value) in [
            ("auth.admin_key_env", &auth.admin_key_env, &self.secrets.admin_key),
            ("auth.widget_key_env", &auth.widget_key_env, &self.secrets.widget_key),
        ] {
            let chars = value.as_ref().map(|v| v.expose_secret().chars().count());
            if chars.is_some_and(|n| n < MIN_KEY_CHARS) {
                return fail(key, format!("names `{var}`, which holds fewer than {MIN_KEY_CHARS} characters"));
            }
        }
        if self.secrets.session_secret.as_ref().is_some_and(|s| s.expose_secret().len() < MIN_SECRET_BYTES) {
            let var = &auth.session_secret_env;
            return fail(
                "auth.session_secret_env",
                format!("names `{var}`, which holds fewer than {MIN_SECRET_BYTES} bytes"),
            );
        }
        let long_enough =
            |var: &str| self.secrets.jwt_secrets.get(var).is_some_and(|s| s.expose_secret().len() >= MIN_SECRET_BYTES);
        if let Err((key, problem)) = auth.validate(long_enough) {
            return fail(&key, problem);
        }
        if let Err((key, problem)) = self.rate_limits.validate(&self.tenant.tier) {
            return fail(&key, problem);
        }
        let jobs = &self.jobs;
        if jobs.workers > 64 {
            return fail("jobs.workers", format!("is {}; expected 0 to 64", jobs.workers));
        }
        if !(1..=1_000_000).contains(&jobs.queue_capacity) {
            return fail("jobs.queue_capacity", format!("is {}; expected 1 to 1000000", jobs.queue_capacity));
        }
        if !(1..=20).contains(&jobs.max_attempts) {
            return fail("jobs.max_attempts", format!("is {}; expected 1 to 20", jobs.max_attempts));
        }
        if !(1..=300).contains(&jobs.webhook_timeout_secs) || !(1..=20).contains(&jobs.webhook_attempts) {
            return fail(
                "jobs.webhook_timeout_secs",
                "and jobs.webhook_attempts must be 1 to 300 s and 1 to 20".into(),
            );
        }
        if !jobs.tier_priority.contains_key(&self.tenant.tier) {
            let tiers: Vec<&str> = jobs.tier_priority.keys().map(String::as_str).collect();
            return fail("tenant.tier", format!("is `{}`; expected one of {}", self.tenant.tier, tiers.join(", ")));
        }
        if let Some(dir) = self.web.dir.as_ref().filter(|d| !d.is_dir()) {
            return fail("web.dir", format!("is `{}`, which is not a folder", dir.display()));
        }
        self.tool_registry().map_err(|e| ConfigError::Tools { problem: e.to_string(), source_name })?;
        Ok(())
    }

    /// The declared tools, compiled; secrets named by `token_env` come from the environment.
    pub fn tool_registry(&self) -> Result<ToolRegistry, concierge_agent::ToolConfigError> {
        ToolRegistry::new(&self.tools, &self.backends, |var| std::env::var(var).ok())
    }
}

impl Secrets {
    /// `DATABASE_URL`, and the variables `llm` and `knowledge` name as holding keys; unset or empty
    /// variables are left out.
    /// The variables `config` names, read now.
    pub fn from_env(config: &Config) -> Self {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(SecretString::from);
        let variables = config.llm.key_variables().into_iter().chain(config.knowledge.key_variable());
        let llm_keys = variables.filter_map(|var| Some((var.to_owned(), get(var)?))).collect();
        let auth = &config.auth;
        let jwt_secrets = auth
            .jwt
            .iter()
            .filter_map(|issuer| issuer.secret_env.as_deref())
            .filter_map(|var| Some((var.to_owned(), get(var)?)))
            .collect();
        Self {
            database_url: get("DATABASE_URL"),
            llm_keys,
            webhook_secret: get(&config.jobs.webhook_secret_env),
            admin_key: get(&auth.admin_key_env),
            widget_key: get(&auth.widget_key_env),
            session_secret: get(&auth.session_secret_env),
            jwt_secrets,
            redis_url: get("REDIS_URL"),
        }
    }

    /// The key held by the variable `var`, if it was set.
    pub fn llm_key(&self, var: &str) -> Option<&SecretString> {
        self.llm_keys.get(var)
    }
}

/// Whether a URL carries `user:password@`.
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// figment's errors, each with its key and where the value came from. The file is named as
/// it was given (figment's own message shortens it relative to the working directory).
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| match &m.source {
                Some(figment::Source::File(path)) => format!("file {}", path.display()),
                // The variable's name, rebuilt the way `load` maps names to keys.
                _ if m.name.contains("environment") => {
                    format!("environment variable CONCIERGE_{}", e.path.join("__").to_uppercase())
                }
                _ => m.name.to_string(),
            });
            match (key.is_empty(), source) {
                (false, Some(source)) => format!("key `{key}`: {} (source: {source})", e.kind),
                (false, None) => format!("key `{key}`: {}", e.kind),
                (true, Some(source)) => format!("{} (source: {source})", e.kind),
                (true, None) => e.kind.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a log filter without pulling the subscriber into this crate.
mod tracing_level {
    pub struct Filter;
    impl std::str::FromStr for Filter {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let ok = !s.trim().is_empty()
                && s.split(',').all(|part| {
                    let level = part.rsplit('=').next().unwrap_or("");
                    ["trace", "debug", "info", "warn", "error", "off"].contains(&level.trim().to_lowercase().as_str())
                });
            if ok {
                Ok(Filter)
            } else {
                Err(())
            }
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, toml: &str) -> Result<Config, ConfigError> {
        jail.create_file("concierge.toml", toml).expect("write config");
        Config::load(Some(Path::new("concierge.toml")))
    }

    #[test]
    fn file_values_apply_and_environment_overrides_them() {
        Jail::expect_with(|jail| {
            jail.set_env("CONCIERGE_SERVER__MAX_MESSAGE_CHARS", "1234");
            jail.set_env("CONCIERGE_ACME_PORT", "9999");
            let config = load_in(
                jail,
                "[server]\nbind = \"0.0.0.0:9000\"\nmax_message_chars = 10\n[tenant]\nid = \"acme\"\nname = \"Acme\"\n",
            )
            .expect("valid");
            assert_eq!(config.server.bind.port(), 9000);
            assert_eq!(config.server.max_message_chars, 1234, "environment wins over the file");
            assert_eq!(config.tenant.id.as_str(), "acme");
            Ok(())
        });
    }

    #[test]
    fn wrong_types_and_unknown_keys_name_the_key_and_file() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[server]\nmax_body_bytes = \"lots\"\n").unwrap_err().to_string();
            assert!(err.contains("key `server.max_body_bytes`") && err.contains("concierge.toml"), "{err}");
            jail.set_env("CONCIERGE_SERVER__MAX_MESSAGE_CHARS", "many");
            let err = load_in(jail, "").unwrap_err().to_string();
            assert!(err.contains("environment variable CONCIERGE_SERVER__MAX_MESSAGE_CHARS"), "{err}");
            jail.clear_env();
            let err = load_in(jail, "[server]\nprot = 1\n").unwrap_err().to_string();
            assert!(err.contains("unknown field") && err.contains("prot"), "{err}");
            let err = load_in(jail, "[tenant]\nid = \"Bad Tenant\"\n").unwrap_err().to_string();
            assert!(err.contains("tenant"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_key() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[server]\nmax_body_bytes = 10\n").unwrap_err().to_string();
            assert!(err.contains("`server.max_body_bytes` is 10; expected 1024"), "{err}");
            let err = load_in(jail, "[store]\nurl = \"mysql://x\"\n").unwrap_err().to_string();
            assert!(err.contains("`store.url`"), "{err}");
            let err = load_in(jail, "[knowledge]\npath = \"no/such/folder\"\n").unwrap_err().to_string();
            assert!(err.contains("`knowledge.path`"), "{err}");
            let err = load_in(jail, "[log]\nlevel = \"loud\"\n").unwrap_err().to_string();
            assert!(err.contains("`log.level`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn passwords_in_the_file_are_refused_and_secrets_never_print() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[store]\nurl = \"postgres://u:hunter2@db/x\"\n").unwrap_err().to_string();
            assert!(err.contains("DATABASE_URL") && !err.contains("hunter2"), "{err}");
            jail.set_env("DATABASE_URL", "postgres://u:hunter2@db/x");
            let config = load_in(jail, "").expect("valid");
            assert_eq!(config.store_url(), "postgres://u:hunter2@db/x");
            assert!(!format!("{config:?}").contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/no/such/concierge.toml"))).unwrap_err();
        assert!(err.to_string().contains("/no/such/concierge.toml"));
    }
}
