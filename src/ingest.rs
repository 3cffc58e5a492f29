//! `concierge ingest PATH…`: documents from files and folders into the store and the
//! knowledge base's indexes, with a progress bar and a summary.
//!
//! A running server reads what was ingested when it next starts (or use `POST
//! /v1/documents` to change a running one); chunks are keyed by revision, so a vector index
//! saved by either is never mistaken for the other's documents.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use concierge_core::TenantId;
use concierge_server::knowledge::{IngestSummary, Knowledge};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct IngestArgs {
    /// Files (Markdown, text, HTML) and folders (read recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The tenant the documents belong to; the configured tenant by default.
    #[arg(long)]
    tenant: Option<TenantId>,
}

pub async fn run(config_file: Option<PathBuf>, args: IngestArgs) -> anyhow::Result<()> {
    let config = crate::load_config(config_file.as_deref())?;
    let tenant = args.tenant.unwrap_or_else(|| config.tenant.id.clone());
    let store = concierge_store::open(&config.store_url()).await?;
    store.migrate().await?;
    let started = Instant::now();
    let knowledge =
        Knowledge::open(Arc::clone(&store), &config.knowledge, &config.secrets, std::slice::from_ref(&tenant))
            .await
            .context("opening the knowledge base")?;
    let mut total = IngestSummary::default();
    for path in &args.paths {
        if path.is_dir() {
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(path.display().to_string());
            let progress = |done: usize, count: usize, id: &str| {
                bar.set_length(count as u64);
                bar.set_position(done as u64);
                bar.set_message(id.to_owned());
            };
            let summary = knowledge
                .ingest_folder(&tenant, path, &progress)
                .await
                .with_context(|| format!("ingesting {}", path.display()))?;
            bar.finish_and_clear();
            println!(
                "{}: {} documents: {} added, {} updated, {} unchanged, {} removed",
                path.display(),
                summary.documents,
                summary.added,
                summary.updated,
                summary.unchanged,
                summary.removed
            );
            total.add(&summary);
        } else {
            let outcome =
                knowledge.ingest_file(&tenant, path).await.with_context(|| format!("ingesting {}", path.display()))?;
            println!("{}: {}", path.display(), serde_json::to_value(outcome)?.as_str().unwrap_or("?"));
            total.count(outcome);
        }
    }
    knowledge.save()?;
    println!(
        "tenant {tenant}: {} documents ({} added, {} updated, {} unchanged, {} removed); {} chunks indexed in {:.1} s",
        total.documents,
        total.added,
        total.updated,
        total.unchanged,
        total.removed,
        knowledge.base().len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
