//! `concierge demo`: the Acme backend on its own port, and Concierge configured for Acme.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use concierge_acme::AcmeData;
use concierge_server::Server;
use secrecy::ExposeSecret;

#[derive(Args)]
pub struct DemoArgs {
    /// Port of the Concierge API.
    #[arg(long, env = "CONCIERGE_PORT", default_value_t = 8080)]
    port: u16,
    /// Port of the Acme backend.
    #[arg(long, env = "CONCIERGE_ACME_PORT", default_value_t = 8090)]
    backend_port: u16,
    /// Folder of the demo company (seed data under `backend/`, articles under `kb/`).
    #[arg(long, default_value = "examples/acme")]
    acme_dir: PathBuf,
}

pub async fn run(config_file: Option<PathBuf>, args: DemoArgs) -> anyhow::Result<()> {
    let config_file = config_file.unwrap_or_else(|| args.acme_dir.join("concierge.toml"));
    let mut config = crate::load_config(Some(&config_file))?;
    config.server.bind.set_port(args.port);
    // The tools call the backend this command starts, on whatever port it was given.
    if let Some(acme) = config.backends.get_mut("acme") {
        acme.url = format!("http://127.0.0.1:{}", args.backend_port);
    }

    // Keys for this run, unless the environment gives them: the console needs an operator
    // or admin key, the chat page carries the widget key.
    let fresh = || concierge_server::auth::fresh_key().map(secrecy::SecretString::from).map_err(anyhow::Error::msg);
    if config.secrets.admin_key.is_none() {
        config.secrets.admin_key = Some(fresh()?);
    }
    if config.secrets.widget_key.is_none() {
        config.secrets.widget_key = Some(fresh()?);
    }
    let admin = config.secrets.admin_key.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();
    let widget = config.secrets.widget_key.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();

    let data = AcmeData::load(&args.acme_dir.join("backend")).context("loading the Acme backend's data")?;
    let (orders, customers) = (data.orders.len(), data.customers.len());
    let backend_addr = SocketAddr::from(([127, 0, 0, 1], args.backend_port));
    let listener = tokio::net::TcpListener::bind(backend_addr)
        .await
        .with_context(|| format!("cannot listen on {backend_addr} for the Acme backend"))?;
    let backend = tokio::spawn(concierge_acme::serve(listener, data, crate::shutdown_signal()));

    let server = Server::build(&config).await?;
    let addr = server.local_addr()?;
    println!("Acme backend  http://{backend_addr}  ({orders} orders, {customers} customers; try /orders/A-10024)");
    println!("Concierge     http://{addr}  (store: {})", crate::redacted_store(&config));
    println!("Web chat      http://{addr}/      API docs http://{addr}/docs/");
    println!("Console       http://{addr}/console#key={admin}");
    println!("Keys          admin  {admin}");
    println!("              widget {widget}");
    println!("Chat          concierge chat --url http://{addr} --key {widget}");
    println!(
        "              curl -s -X POST http://{addr}/v1/conversations/$(curl -s -X POST http://{addr}/v1/conversations -H 'authorization: Bearer {admin}' | jq -r .id)/messages \\\n                -H 'authorization: Bearer {admin}' -H 'content-type: application/json' -d '{{\"content\":\"Where is my order?\"}}'"
    );
    println!("Press Ctrl-C to stop.");
    let served = server.serve(crate::shutdown_signal()).await;
    backend.await.context("the Acme backend stopped unexpectedly")??;
    served?;
    Ok(())
}
