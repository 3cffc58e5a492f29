//! `concierge eval agent` through the binary: the golden conversations against the demo's
//! configuration and a fresh Acme backend, with a floor under each score. The floors are
//! the scores measured when they were set (bench/README.md "Agent"), rounded down.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn eval_agent(args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("CONCIERGE_")) {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["eval", "agent", "--json"])
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("concierge runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).expect("the report is JSON")
}

fn rate(metrics: &Value, name: &str) -> f64 {
    let tally = &metrics[name];
    let (hits, total) = (tally["hits"].as_f64().unwrap_or(0.0), tally["total"].as_f64().unwrap_or(0.0));
    assert!(total > 0.0, "{name} was never checked: {metrics}");
    hits / total
}

#[test]
fn the_agent_keeps_its_floors_on_every_golden_conversation() {
    let report = eval_agent(&["--no-model"]);
    let m = &report["metrics"];
    assert!(m["conversations"].as_u64().unwrap() >= 60, "{m}");
    let floors = [
        ("routing", 0.85),
        ("tool_calls", 0.92),
        ("asks_for", 1.0),
        ("approvals", 0.8),
        ("out_of_scope", 1.0),
        ("escalation_precision", 0.95),
        ("escalation_recall", 0.95),
        ("resolved", 0.85),
        ("outcome_agreement", 0.92),
        ("cites", 0.83),
        ("supported_answers", 1.0),
    ];
    let below: Vec<String> = floors
        .iter()
        .filter(|(name, floor)| rate(m, name) < *floor)
        .map(|(name, floor)| format!("{name} {:.3} < {floor}", rate(m, name)))
        .collect();
    assert!(below.is_empty(), "below the floor: {below:?}\nmisses: {}", m["misses"]);
}

#[test]
fn with_the_embedded_model_every_sent_answer_has_its_facts_supported() {
    let report = eval_agent(&["--tag", "product", "--limit", "6"]);
    assert_eq!(report["model"], "local");
    let m = &report["metrics"];
    assert!(m["supported_answers"]["total"].as_u64().unwrap() >= 5, "{m}");
    assert_eq!(rate(m, "supported_answers"), 1.0, "misses: {}", m["misses"]);
    assert!(rate(m, "routing") >= 0.8, "{m}");
}
