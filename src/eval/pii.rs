//! `concierge eval pii`: the personal-data detector on a labelled set in Presidio's format
//! (Presidio's synthetic set by default, from `--data`): precision, recall and coverage per
//! kind, against the targets for the kinds a checksum or a fixed shape confirms.

use std::path::PathBuf;
use std::time::Instant;

use concierge_guard::eval::{evaluate, read_presidio, PiiReport};
use concierge_guard::{PiiKind, Scanner};
use indicatif::{ProgressBar, ProgressStyle};

/// The figures the detector is held to (addresses have none: there is no checksum for one).
pub const RECALL_TARGET: f64 = 0.99;
pub const PRECISION_TARGET: f64 = 0.95;

#[derive(clap::Args)]
pub struct PiiArgs {
    /// A folder holding `presidio/synth_dataset_v2.json`, as Presidio's authors publish it.
    #[arg(long, conflicts_with = "set")]
    data: Option<PathBuf>,
    /// A labelled set in Presidio's format, instead of the one under `--data`.
    #[arg(long)]
    set: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also print the values missed and the wrong findings of each kind.
    #[arg(long)]
    verbose: bool,
    /// Write a chart of precision and recall per kind into this folder (`pii.svg`).
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn run(args: PiiArgs) -> anyhow::Result<()> {
    let file = match (&args.set, &args.data) {
        (Some(set), _) => set.clone(),
        (None, Some(dir)) => dir.join("presidio/synth_dataset_v2.json"),
        (None, None) => anyhow::bail!("name the labelled set: --data DIR (holding presidio/) or --set FILE"),
    };
    let texts = read_presidio(&file)?;
    let scanner = Scanner::new();
    let bar = ProgressBar::new(texts.len() as u64).with_style(
        ProgressStyle::with_template("scanning [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let report = evaluate(&scanner, &texts, |done| bar.set_position(done as u64));
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let bytes: usize = texts.iter().map(|t| t.text.len()).sum();
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("pii.svg");
        let title = format!(
            "PII detection on {} ({} texts)",
            file.file_name().unwrap_or_default().to_string_lossy(),
            report.texts
        );
        std::fs::write(&path, super::plot::pii_svg(&title, &report, PRECISION_TARGET, RECALL_TARGET))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        let value = serde_json::json!({
            "set": file.display().to_string(),
            "report": report,
            "seconds": seconds,
            "texts_per_second": texts.len() as f64 / seconds,
            "targets": { "precision": PRECISION_TARGET, "recall": RECALL_TARGET },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&file, &report, seconds, bytes, args.verbose);
    }
    Ok(())
}

fn print_table(file: &std::path::Path, report: &PiiReport, seconds: f64, bytes: usize, verbose: bool) {
    println!(
        "{} texts of {} in {:.0} ms ({:.0} texts/s, {:.1} MB/s)",
        report.texts,
        file.display(),
        seconds * 1000.0,
        report.texts as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
    println!(
        "{:<8} {:>8} {:>6} {:>9} {:>7} {:>9}  target",
        "kind", "labelled", "found", "precision", "recall", "coverage"
    );
    for score in &report.kinds {
        let target = if score.kind == PiiKind::Address {
            "best effort".to_owned()
        } else {
            let met = score.precision >= PRECISION_TARGET && score.recall >= RECALL_TARGET;
            format!("P ≥ {PRECISION_TARGET}, R ≥ {RECALL_TARGET}: {}", if met { "met" } else { "NOT MET" })
        };
        println!(
            "{:<8} {:>8} {:>6} {:>9.3} {:>7.3} {:>9.3}  {target}",
            score.kind.name(),
            score.labelled,
            score.found,
            score.precision,
            score.recall,
            score.coverage
        );
        if verbose {
            for missed in &score.missed {
                println!("    missed  {missed}");
            }
            for wrong in &score.wrong {
                println!("    wrong   {wrong}");
            }
        }
    }
}
