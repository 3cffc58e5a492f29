//! `concierge eval routing`: how well the router recognises intents, with the configured
//! embedder and `[router]` settings — cross-validated on the company's intents file, and on
//! the public sets BANKING77 (full training set, and 10 examples per intent averaged over
//! several draws) and CLINC150 (in-scope accuracy and out-of-scope recall, the threshold
//! chosen on its validation part) when `--data` holds them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;
use concierge_agent::router::datasets::{self, LabelledText};
use concierge_agent::router::eval::{choose_scope, cross_validate, score, RoutingMetrics};
use concierge_agent::router::{Prediction, Router, RouterConfig};
use concierge_agent::IntentSpec;
use concierge_retrieval::embed::Embedder;
use concierge_server::Config;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(clap::Args)]
pub struct RoutingArgs {
    /// The intents file; `router.intents` by default, else examples/acme/intents.toml.
    #[arg(long)]
    intents: Option<PathBuf>,
    /// Messages the intents do not cover, one per line, each expected out of scope.
    #[arg(long, default_value = "examples/acme/out_of_scope.txt")]
    out_of_scope: PathBuf,
    /// A folder holding `banking77/` (train.csv, test.csv) and `clinc150/` (data_full.json)
    /// as their authors publish them.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The sets to run, comma-separated; by default every set that is available.
    #[arg(long, value_enum, value_delimiter = ',')]
    sets: Vec<EvalSet>,
    /// Draws of 10 examples per intent to average for the few-shot figure (seeds 1 … N).
    #[arg(long, default_value_t = 5)]
    draws: u64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write a reliability diagram of each set into this folder (`routing-<set>.svg`).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum EvalSet {
    /// The intents file, 5-fold cross-validated.
    Intents,
    /// BANKING77, trained on its full training set.
    Banking77,
    /// BANKING77, trained on 10 examples per intent.
    Banking77TenShot,
    /// CLINC150 with its out-of-scope messages.
    Clinc150,
}

/// One set's result.
#[derive(Serialize)]
struct SetResult {
    set: EvalSet,
    train_examples: usize,
    /// Mean over the draws for the few-shot set; otherwise the one run.
    metrics: RoutingMetrics,
    /// Accuracy of each few-shot draw.
    draws: Vec<f64>,
    temperature: f32,
    seconds: f64,
}

pub async fn run(config: &Config, args: RoutingArgs) -> anyhow::Result<()> {
    let intents_file = args
        .intents
        .clone()
        .or_else(|| config.router.intents.clone())
        .unwrap_or_else(|| PathBuf::from("examples/acme/intents.toml"));
    let sets = chosen_sets(&args)?;
    let embedder = concierge_server::knowledge::embedder(&config.knowledge, &config.secrets)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = Vec::new();
    for set in sets {
        let started = Instant::now();
        let eval = Eval { embedder: Arc::clone(&embedder), config: config.router.clone(), bar: &bar };
        let result = match set {
            EvalSet::Intents => {
                let out_of_scope = if args.out_of_scope.is_file() {
                    datasets::read_out_of_scope(&args.out_of_scope)?
                } else {
                    Vec::new()
                };
                eval.intents(&datasets::read_intents(&intents_file)?, &out_of_scope).await?
            }
            EvalSet::Banking77 => eval.banking77(&data_dir(&args)?.join("banking77"), None).await?,
            EvalSet::Banking77TenShot => {
                eval.banking77(&data_dir(&args)?.join("banking77"), Some((10, args.draws.max(1)))).await?
            }
            EvalSet::Clinc150 => eval.clinc150(&data_dir(&args)?.join("clinc150/data_full.json")).await?,
        };
        results.push(SetResult { seconds: started.elapsed().as_secs_f64(), ..result });
    }
    bar.finish_and_clear();
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)?;
        for r in &results {
            let name = set_name(r.set);
            let title = format!("router reliability: {name} ({} test messages)", r.metrics.examples);
            let path = dir.join(format!("routing-{name}.svg"));
            std::fs::write(&path, super::plot::reliability_svg(&title, &r.metrics))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_table(embedder.id(), &results);
    }
    Ok(())
}

fn chosen_sets(args: &RoutingArgs) -> anyhow::Result<Vec<EvalSet>> {
    if !args.sets.is_empty() {
        return Ok(args.sets.clone());
    }
    let mut sets = vec![EvalSet::Intents];
    if let Some(dir) = &args.data {
        if dir.join("banking77/train.csv").is_file() {
            sets.extend([EvalSet::Banking77TenShot, EvalSet::Banking77]);
        }
        if dir.join("clinc150/data_full.json").is_file() {
            sets.push(EvalSet::Clinc150);
        }
        if sets.len() == 1 {
            anyhow::bail!("{} holds neither banking77/train.csv nor clinc150/data_full.json", dir.display());
        }
    }
    Ok(sets)
}

fn data_dir(args: &RoutingArgs) -> anyhow::Result<&Path> {
    args.data.as_deref().ok_or_else(|| anyhow::anyhow!("the public sets need --data DIR"))
}

struct Eval<'a> {
    embedder: Arc<dyn Embedder>,
    config: RouterConfig,
    bar: &'a ProgressBar,
}

impl Eval<'_> {
    async fn train(&self, what: &str, intents: &[IntentSpec]) -> anyhow::Result<Router> {
        self.bar.set_message(format!("{what}: training"));
        Ok(Router::train(Arc::clone(&self.embedder), intents, self.config.clone(), &|done, total| {
            self.bar.set_length(total as u64);
            self.bar.set_position(done as u64);
        })
        .await?)
    }

    async fn predict(&self, what: &str, router: &Router, test: &[LabelledText]) -> anyhow::Result<Vec<Prediction>> {
        self.bar.set_message(format!("{what}: predicting"));
        let texts: Vec<&str> = test.iter().map(|t| t.text.as_str()).collect();
        Ok(router
            .predict_all(&texts, &|done, total| {
                self.bar.set_length(total as u64);
                self.bar.set_position(done as u64);
            })
            .await?)
    }

    /// Five folds (see `cross_validate`).
    async fn intents(&self, intents: &[IntentSpec], out_of_scope: &[LabelledText]) -> anyhow::Result<SetResult> {
        let result = cross_validate(&self.embedder, intents, out_of_scope, &self.config, 5, &|fold, done, total| {
            self.bar.set_message(format!("intents, fold {}/5", fold + 1));
            self.bar.set_length(total as u64);
            self.bar.set_position(done as u64);
        })
        .await?;
        Ok(SetResult {
            set: EvalSet::Intents,
            train_examples: result.train_examples,
            metrics: result.metrics,
            draws: Vec::new(),
            temperature: result.temperature,
            seconds: 0.0,
        })
    }

    /// The full training set, or `few_shot = (per intent, draws)`.
    async fn banking77(&self, dir: &Path, few_shot: Option<(usize, u64)>) -> anyhow::Result<SetResult> {
        let split = datasets::banking77(dir)?;
        let all = datasets::intents_of(&split.train);
        let Some((per_intent, draws)) = few_shot else {
            let router = self.train("banking77", &all).await?;
            let predictions = self.predict("banking77", &router, &split.test).await?;
            return Ok(SetResult {
                set: EvalSet::Banking77,
                train_examples: split.train.len(),
                metrics: score(&predictions, &split.test, self.config.scope()),
                draws: Vec::new(),
                temperature: router.temperature(),
                seconds: 0.0,
            });
        };
        let mut runs: Vec<(RoutingMetrics, f32)> = Vec::new();
        for seed in 1..=draws {
            let what = format!("banking77 {per_intent}-shot, draw {seed}/{draws}");
            let router = self.train(&what, &datasets::few_shot(&all, per_intent, seed)).await?;
            let predictions = self.predict(&what, &router, &split.test).await?;
            runs.push((score(&predictions, &split.test, self.config.scope()), router.temperature()));
        }
        let n = runs.len() as f64;
        let mut metrics = runs[0].0.clone();
        metrics.accuracy = runs.iter().map(|(m, _)| m.accuracy).sum::<f64>() / n;
        metrics.in_scope_accuracy = runs.iter().map(|(m, _)| m.in_scope_accuracy).sum::<f64>() / n;
        metrics.false_out_of_scope = runs.iter().map(|(m, _)| m.false_out_of_scope).sum::<f64>() / n;
        metrics.calibration_error = runs.iter().map(|(m, _)| m.calibration_error).sum::<f64>() / n;
        Ok(SetResult {
            set: EvalSet::Banking77TenShot,
            train_examples: all.len() * per_intent,
            draws: runs.iter().map(|(m, _)| m.accuracy).collect(),
            temperature: runs.iter().map(|(_, t)| t).sum::<f32>() / runs.len() as f32,
            metrics,
            seconds: 0.0,
        })
    }

    /// Fitted on the in-scope training messages; the out-of-scope threshold is the one that
    /// does best on the validation part, then applied to the test part.
    async fn clinc150(&self, file: &Path) -> anyhow::Result<SetResult> {
        let split = datasets::clinc150(file)?;
        let intents = datasets::intents_of(&split.train);
        let router = self.train("clinc150", &intents).await?;
        let validation = self.predict("clinc150 validation", &router, &split.validation).await?;
        let scope = choose_scope(&validation, &split.validation, self.config.scope());
        let predictions = self.predict("clinc150 test", &router, &split.test).await?;
        Ok(SetResult {
            set: EvalSet::Clinc150,
            train_examples: intents.iter().map(|i| i.examples.len()).sum(),
            metrics: score(&predictions, &split.test, scope),
            draws: Vec::new(),
            temperature: router.temperature(),
            seconds: 0.0,
        })
    }
}

fn set_name(set: EvalSet) -> String {
    serde_json::to_value(set).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn print_table(embedder: &str, results: &[SetResult]) {
    println!("router on {embedder}: logistic regression, temperature-calibrated");
    println!(
        "{:<20} {:>7} {:>7} {:>9} {:>9} {:>8} {:>9} {:>6} {:>6} {:>6} {:>7}",
        "set", "train", "test", "accuracy", "in-scope", "oos-rec", "false-oos", "conf<", "sim<", "ECE", "seconds"
    );
    for r in results {
        let m = &r.metrics;
        let recall = m.out_of_scope_recall.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let name = set_name(r.set);
        println!(
            "{:<20} {:>7} {:>7} {:>9.3} {:>9.3} {:>8} {:>9.3} {:>6.2} {:>6.2} {:>6.3} {:>7.1}",
            name,
            r.train_examples,
            m.examples,
            m.accuracy,
            m.in_scope_accuracy,
            recall,
            m.false_out_of_scope,
            m.scope.confidence_below,
            m.scope.similarity_below,
            m.calibration_error,
            r.seconds
        );
        if !r.draws.is_empty() {
            let low = r.draws.iter().copied().fold(f64::INFINITY, f64::min);
            let high = r.draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!("{:<20} accuracy over {} draws: {low:.3} … {high:.3}", "", r.draws.len());
        }
    }
}
