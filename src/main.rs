//! The `concierge` binary: wiring only. Each subcommand parses its arguments, loads the
//! configuration and hands over to the crates that do the work.

mod chat;
mod demo;
mod eval;
mod ingest;
mod keys;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use concierge_server::{Config, Server};

#[derive(Parser)]
#[command(name = "concierge", version, about = "Self-hosted AI agent server for customer support")]
struct Cli {
    /// Configuration file (TOML). `CONCIERGE_SECTION__KEY` variables override its values.
    #[arg(long, short, global = true, env = "CONCIERGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API with the given configuration.
    Serve,
    /// Create or upgrade the store's tables, then exit.
    Migrate,
    /// Run the Acme demo: the company's backend and Concierge configured to use it.
    Demo(demo::DemoArgs),
    /// Talk to a running Concierge from the terminal.
    Chat(chat::ChatArgs),
    /// Add or update knowledge-base documents from files and folders.
    Ingest(ingest::IngestArgs),
    /// Manage API keys in the store: `concierge keys create | list | revoke`.
    Keys(keys::KeysArgs),
    /// Measure quality: `concierge eval retrieval | routing | agent`.
    Eval(eval::EvalArgs),
    /// Print the support agent's graph as configured.
    Graph {
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart (paste into any Mermaid renderer).
    Mermaid,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(cli.config).await,
            Command::Migrate => migrate(cli.config).await,
            Command::Demo(args) => demo::run(cli.config, args).await,
            Command::Chat(args) => chat::run(args).await,
            Command::Ingest(args) => ingest::run(cli.config, args).await,
            Command::Keys(args) => keys::run(cli.config, args).await,
            Command::Eval(args) => eval::run(cli.config, args).await,
            Command::Graph { format: GraphFormat::Mermaid } => graph(cli.config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads the configuration and starts logging as it asks.
pub(crate) fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load(file)?;
    logging::init(&config);
    Ok(config)
}

async fn serve(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(config_file.as_deref())?;
    let server = Server::build(&config).await?;
    tracing::info!(addr = %server.local_addr()?, store = %redacted_store(&config), "concierge listening");
    server.serve(shutdown_signal()).await?;
    Ok(())
}

async fn migrate(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(config_file.as_deref())?;
    let store = concierge_store::open(&config.store_url()).await?;
    store.migrate().await?;
    println!("migrated the {} store at {}", store.backend(), redacted_store(&config));
    Ok(())
}

/// An HTTP client for Concierge's API that sends `key` as a bearer token on every request.
pub(crate) fn api_client(key: Option<&str>, timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("the API key holds characters a header cannot"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder().timeout(timeout).default_headers(headers).build()?)
}

/// The store URL without credentials, for messages.
pub(crate) fn redacted_store(config: &Config) -> String {
    let url = config.store_url();
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url,
        },
        None => url,
    }
}

/// Resolves on Ctrl-C or SIGTERM, so a container stop finishes requests in flight.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// Builds the configured agent on a scratch store, with no knowledge base, router or model
/// (the graph's shape depends on none of them), and prints its graph.
async fn graph(config_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config_file.as_deref())?;
    let dir = tempfile::tempdir()?;
    config.store.url = format!("sqlite://{}", dir.path().join("graph.db").display());
    config.secrets.database_url = None;
    config.server.bind = "127.0.0.1:0".parse()?;
    config.knowledge.path = None;
    config.knowledge.data_dir = Some(dir.path().join("vectors"));
    config.router.intents = None;
    config.llm.provider = concierge_server::config::NO_MODEL.into();
    let server = concierge_server::Server::build(&config).await?;
    print!("{}", server.agent_graph());
    Ok(())
}
