//! `concierge eval retrieval`: precision@5, recall@5, MRR and nDCG@10 of keyword, vector and
//! hybrid search over a question set, with the configured embedder, chunking and search
//! settings, on a knowledge base built in memory (the store is not touched).

use std::path::PathBuf;

use concierge_core::TenantId;
use concierge_retrieval::eval::{evaluate, knowledge_base_of_folder, read_questions};
use concierge_retrieval::SearchMode;
use concierge_server::Config;
use indicatif::ProgressBar;

pub async fn run(config: &Config, kb: Option<PathBuf>, questions: PathBuf, json: bool) -> anyhow::Result<()> {
    let folder = kb.or_else(|| config.knowledge.path.clone()).unwrap_or_else(|| PathBuf::from("examples/acme/kb"));
    let questions = read_questions(&questions).map_err(anyhow::Error::msg)?;
    let tenant = TenantId::try_from("eval".to_owned()).map_err(anyhow::Error::msg)?;
    let embedder = concierge_server::knowledge::embedder(&config.knowledge, &config.secrets)?;
    let bar = ProgressBar::new(0);
    bar.set_message("indexing");
    let kb = knowledge_base_of_folder(
        &folder,
        &tenant,
        embedder,
        config.knowledge.chunking,
        config.knowledge.search.clone(),
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .await?;
    let mut rows = Vec::new();
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        bar.set_message(format!("{mode:?}").to_lowercase());
        let metrics = evaluate(&kb, &tenant, &questions, mode, &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await?;
        rows.push((mode, metrics));
    }
    bar.finish_and_clear();
    if json {
        let value: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(mode, m)| {
                Ok((serde_json::to_value(mode)?.as_str().unwrap_or("").to_owned(), serde_json::to_value(m)?))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} questions ({} answerable), {} chunks, {}",
        questions.len(),
        rows[0].1.answerable,
        kb.len(),
        kb.embedder_id()
    );
    println!(
        "{:<8} {:>6} {:>6} {:>6} {:>8} {:>10} {:>10} {:>8}",
        "mode", "P@5", "R@5", "MRR", "nDCG@10", "not-found", "false-nf", "ms/q"
    );
    for (mode, m) in rows {
        println!(
            "{:<8} {:>6.3} {:>6.3} {:>6.3} {:>8.3} {:>10.3} {:>10.3} {:>8.2}",
            format!("{mode:?}").to_lowercase(),
            m.precision_at_5,
            m.recall_at_5,
            m.mrr,
            m.ndcg_at_10,
            m.not_found_recall,
            m.false_not_found,
            m.mean_ms
        );
    }
    Ok(())
}
