//! The Concierge HTTP server: configuration, the REST API, error mapping, health.
//!
//! Invariant: handlers hold no logic. They extract, call a service, and map the result;
//! every error becomes an `ApiError`, whose status and code are decided in `error.rs` only.

pub mod agent_model;
pub mod answer;
pub mod app;
pub mod auth;
pub mod config;
pub mod conversation;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod grounded;
pub mod health;
pub mod hub;
pub mod jobs;
pub mod knowledge;
pub mod listen;
pub mod llm;
pub mod openai;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod search;
pub mod stats;
pub mod telemetry;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use concierge_core::Tenant;
use concierge_store::Store;

pub use config::{Config, ConfigError};
pub use error::ApiError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] concierge_store::StoreError),
    #[error("knowledge base: {0}")]
    Knowledge(#[from] knowledge::KnowledgeError),
    #[error("tools: {0}")]
    Tools(#[from] concierge_agent::ToolConfigError),
    #[error("{0}")]
    Router(#[from] concierge_agent::RouterError),
    #[error("router: {0}")]
    Intents(#[from] concierge_agent::router::datasets::DatasetError),
    #[error("model: {0}")]
    Llm(#[from] llm::LlmStartError),
    #[error("{0}")]
    Agent(#[from] concierge_agent::support::AgentConfigError),
    #[error("agent.function_calling = \"native\" needs a model, but llm.provider is \"none\"")]
    NativeWithoutModel,
    #[error("router.llm needs a model, but llm.provider is \"none\"")]
    LlmRoutingWithoutModel,
    #[error("looking for unanswered messages or queued jobs: {0}")]
    Unanswered(#[from] ApiError),
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthSetupError),
    #[error("rate limits: {0}")]
    RateLimits(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

type AgentModelRef = Arc<dyn concierge_agent::support::AgentModel>;

/// How long the model may take for one answer: four fifths of the request's deadline, so
/// that a model that runs out of time still leaves time to quote the knowledge base.
fn model_budget(request_timeout: Duration) -> Duration {
    request_timeout.mul_f64(0.8)
}

/// How many of the newest conversations start-up looks through for unanswered messages.
const RECOVER_CONVERSATIONS: u32 = 200;

/// A server that is bound and ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    connections: listen::ConnectionLimits,
    agent_graph: String,
    jobs: Arc<jobs::JobService>,
}

impl Server {
    /// Opens and migrates the store, records the tenant, loads the knowledge base and the
    /// model, and binds the listening socket. Nothing is served until `serve` is called.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let store = concierge_store::open(&config.store_url()).await?;
        store.migrate().await?;
        Self::build_with_store(config, store).await
    }

    /// As `build`, on a store that is already open and migrated.
    pub async fn build_with_store(config: &Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        telemetry::install();
        let tenant = &config.tenant;
        store
            .upsert_tenant(&Tenant {
                id: tenant.id.clone(),
                name: tenant.name.clone(),
                tier: tenant.tier.clone(),
                created_at: concierge_core::now(),
            })
            .await?;
        // The model and the intents file first: their problems stop start-up before anything
        // is embedded.
        let (model, gateway) = llm::LlmStack::build(&config.llm, &config.secrets, config.privacy.remote_models).await?;
        let intents =
            config.router.intents.as_deref().map(concierge_agent::router::datasets::read_intents).transpose()?;
        let knowledge = Arc::new(
            knowledge::Knowledge::open(
                Arc::clone(&store),
                &config.knowledge,
                &config.secrets,
                std::slice::from_ref(&tenant.id),
            )
            .await?,
        );
        if let Some(dir) = &config.knowledge.path {
            let progress = |done: usize, total: usize, _: &str| {
                if done % 10 == 0 || done == total {
                    tracing::info!(done, total, "ingesting the knowledge base");
                }
            };
            let summary = knowledge.ingest_folder(&tenant.id, dir, &progress).await?;
            tracing::info!(
                documents = summary.documents,
                added = summary.added,
                updated = summary.updated,
                unchanged = summary.unchanged,
                removed = summary.removed,
                chunks = summary.chunks,
                "knowledge base loaded"
            );
        }
        knowledge.keep_saved(Duration::from_secs(5));
        let router = match &intents {
            Some(intents) => {
                let embedder = Arc::clone(knowledge.base().embedder());
                let router =
                    concierge_agent::Router::train(embedder, intents, config.router.clone(), &|_, _| {}).await?;
                Some(Arc::new(router))
            }
            None => None,
        };
        let limits = app::Limits {
            max_body_bytes: config.server.max_body_bytes,
            max_document_bytes: config.knowledge.max_document_bytes,
            request_timeout: Duration::from_secs(config.server.request_timeout_secs),
        };
        let model = model.map(Arc::new);
        let mut answerer =
            answer::KnowledgeAnswerer::new(Arc::clone(&store), Arc::clone(&knowledge), tenant.id.clone())
                .with_tools(config.tools.iter().map(|tool| tool.name.clone()).collect());
        if let Some(stack) = &model {
            answerer = answerer.with_model(Arc::clone(stack), model_budget(limits.request_timeout));
        }
        let (tool_model, route_model) = Self::agent_models(config, model.as_ref(), &store, limits.request_timeout)?;
        let parts = concierge_agent::AgentParts {
            store: Arc::clone(&store),
            tools: Arc::new(config.tool_registry()?),
            router,
            answerer: Arc::new(answerer),
            tool_model,
            route_model,
            intents: intents.unwrap_or_default(),
        };
        let agent = concierge_agent::SupportAgent::new(config.agent.clone(), parts)?;
        let service = conversation::ConversationService::new(
            store,
            knowledge,
            agent,
            tenant.id.clone(),
            config.server.max_message_chars,
            config.agent.name.clone(),
            config.privacy,
        );
        let agent_graph = service.agent_graph();
        let service = Arc::new(service);
        let jobs = Arc::new(jobs::JobService::new(
            Arc::clone(service.store()),
            Arc::new(concierge_store::MemoryQueue::new(config.jobs.queue_capacity)),
            Arc::clone(&service),
            config.jobs.clone(),
            &tenant.tier,
            config.secrets.webhook_secret.clone(),
        ));
        // Messages a previous process took in and died before answering are found now and
        // answered in the background: their model calls do not hold up the start. Those a
        // queued job will answer are left to it.
        let for_jobs = jobs.prepare().await?;
        let mut unanswered = service.unanswered(RECOVER_CONVERSATIONS).await?;
        unanswered.retain(|(_, message)| !for_jobs.contains(&message.id));
        let recovering = Arc::clone(&service);
        tokio::spawn(async move {
            match recovering.answer_unanswered(unanswered).await {
                Ok(0) => {}
                Ok(recovered) => tracing::warn!(recovered, "answered messages a previous run left unanswered"),
                Err(error) => tracing::error!(%error, "could not answer the messages a previous run left unanswered"),
            }
        });
        let gateway = Arc::new(gateway::Gateway::new(
            gateway,
            config.llm.prices.clone(),
            Arc::clone(service.store()),
            tenant.id.clone(),
            config.privacy.replies,
        ));
        let auth = Arc::new(auth::Authenticator::new(config, Arc::clone(service.store())).await?);
        let widget_key = config.secrets.widget_key.clone();
        let rate_limits = Arc::new(
            ratelimit::RateLimits::new(
                &config.rate_limits,
                &tenant.tier,
                tenant.id.as_str(),
                config.secrets.redis_url.as_ref(),
            )
            .map_err(StartError::RateLimits)?,
        );
        let state = routes::AppState {
            conversations: service,
            jobs: Arc::clone(&jobs),
            web: Arc::new(web::WebAssets::new(config.web.dir.clone(), widget_key)),
            gateway: Arc::clone(&gateway),
            auth,
            rate_limits: Arc::clone(&rate_limits),
            telemetry: Arc::new(telemetry::Sources {
                llm: model.clone(),
                gateway,
                jobs: Arc::clone(&jobs),
                limits: rate_limits,
            }),
        };
        let app = app::router(state, limits);
        let addr = config.server.bind;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let connections = listen::ConnectionLimits {
            max_connections: config.server.max_connections,
            header_timeout: Duration::from_secs(config.server.header_timeout_secs),
            drain: Duration::from_secs(config.server.drain_secs),
        };
        Ok(Self { listener, app, connections, agent_graph, jobs })
    }

    /// The model as the agent consults it: for tools when `agent.function_calling` makes
    /// that native (asked for, or `auto` with only remote providers configured), and for
    /// routing when `router.llm` asks. Each call gets a third of the request's deadline: a
    /// turn may make several, and still answer after them.
    fn agent_models(
        config: &Config,
        model: Option<&Arc<llm::LlmStack>>,
        store: &Arc<dyn Store>,
        request_timeout: Duration,
    ) -> Result<(Option<AgentModelRef>, Option<AgentModelRef>), StartError> {
        use concierge_agent::support::FunctionCalling;
        let Some(stack) = model else {
            return match config.agent.function_calling {
                FunctionCalling::Native => Err(StartError::NativeWithoutModel),
                _ if config.router.llm != concierge_agent::LlmRouting::Off => Err(StartError::LlmRoutingWithoutModel),
                _ => Ok((None, None)),
            };
        };
        let native = match config.agent.function_calling {
            FunctionCalling::Extraction => false,
            FunctionCalling::Native => true,
            FunctionCalling::Auto => config.llm.remote_only(),
        };
        let routes = config.router.llm != concierge_agent::LlmRouting::Off;
        let agent_model: AgentModelRef = Arc::new(agent_model::StackAgentModel::new(
            Arc::clone(store),
            Arc::clone(stack),
            config.tenant.id.clone(),
            request_timeout / 3,
        ));
        if native {
            tracing::info!("function calling: native (the model chooses tools; arguments still checked)");
        }
        if routes {
            tracing::info!(mode = ?config.router.llm, "routing: the model reads what the router is asked to let it");
        }
        Ok((native.then(|| Arc::clone(&agent_model)), routes.then_some(agent_model)))
    }

    /// The support agent's graph as configured, as a Mermaid flowchart.
    pub fn agent_graph(&self) -> &str {
        &self.agent_graph
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the job workers and serves until `shutdown` resolves, then lets the
    /// connections finish for up to `server.drain_secs`.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        self.jobs.start().await;
        listen::serve(self.listener, self.app, self.connections, shutdown).await
    }
}
