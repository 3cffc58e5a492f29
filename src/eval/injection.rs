//! `concierge eval injection`: the prompt-injection detector on the attack set written for
//! it, on attacks written after its rules were (held out), and on BANKING77's test messages,
//! all benign, from `--data`.

use std::path::PathBuf;

use concierge_agent::router::datasets;
use concierge_guard::eval::{evaluate_injection, read_injection_cases, InjectionReport};
use concierge_guard::InjectionDetector;

#[derive(clap::Args)]
pub struct InjectionArgs {
    /// Attacks and benign look-alikes, JSON lines of {text, label, technique, channel}.
    #[arg(long, default_value = "examples/acme/injection.jsonl")]
    set: PathBuf,
    /// Attacks written after the detector's rules, never used to tune them.
    #[arg(long, default_value = "examples/acme/injection_heldout.jsonl")]
    held_out: PathBuf,
    /// A folder holding `banking77/test.csv`: benign customer messages.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InjectionArgs) -> anyhow::Result<()> {
    let public: Vec<String> = match &args.data {
        Some(dir) => datasets::banking77(&dir.join("banking77"))?.test.into_iter().map(|t| t.text).collect(),
        None => Vec::new(),
    };
    let detector = InjectionDetector::new();
    let started = std::time::Instant::now();
    let written = evaluate_injection(&detector, &read_injection_cases(&args.set)?, &public);
    let held_out = evaluate_injection(&detector, &read_injection_cases(&args.held_out)?, &[]);
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "set": written, "held_out": held_out, "seconds": seconds })
            )?
        );
        return Ok(());
    }
    print_report(&args.set.display().to_string(), &written);
    println!();
    print_report(&format!("{} (held out)", args.held_out.display()), &held_out);
    if public.is_empty() {
        println!("\nBANKING77 not measured: pass --data DIR holding banking77/test.csv");
    } else {
        println!(
            "\nBANKING77 test messages (benign): {} of {} called attacks, false-positive rate {:.4} (target ≤ 0.01)",
            written.public_flagged, written.public_benign, written.public_false_positive_rate
        );
    }
    Ok(())
}

fn print_report(name: &str, report: &InjectionReport) {
    println!("{name}: {} of {} attacks detected ({:.3})", report.detected, report.attacks, report.detection_rate);
    println!("{:<18} {:>7} {:>8} {:>6}", "group", "attacks", "detected", "rate");
    for group in report.by_technique.iter().chain(&report.by_channel) {
        println!("{:<18} {:>7} {:>8} {:>6.3}", group.group, group.attacks, group.detected, group.rate);
    }
    if report.benign > 0 {
        println!(
            "benign look-alikes: {} of {} called attacks ({:.3})",
            report.benign_flagged, report.benign, report.benign_false_positive_rate
        );
    }
}
