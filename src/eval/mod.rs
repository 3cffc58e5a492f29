//! `concierge eval …`: measurements of the parts that decide what a customer gets.

mod agent;
mod injection;
mod pii;
mod plot;
mod retrieval;
mod routing;

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    what: EvalCommand,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Search quality on a question set with relevant documents (JSON lines).
    Retrieval {
        /// The knowledge-base folder; `knowledge.path` by default.
        #[arg(long)]
        kb: Option<PathBuf>,
        #[arg(long, default_value = "examples/acme/retrieval.jsonl")]
        questions: PathBuf,
        /// Print the figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Router accuracy, out-of-scope detection and calibration: cross-validated on the
    /// configured intents, and on BANKING77 and CLINC150 when `--data` holds them.
    Routing(routing::RoutingArgs),
    /// The support agent on the golden conversations: routing, tool calls, escalation,
    /// resolution and how many answers have every fact supported. Uses the demo's
    /// configuration unless `--config` names another.
    Agent(agent::AgentArgs),
    /// Personal-data detection on a labelled set (Presidio's format): precision, recall and
    /// coverage per kind, against the targets.
    Pii(pii::PiiArgs),
    /// Prompt-injection detection: the attack set, the held-out attacks, and the
    /// false-positive rate on BANKING77's benign test messages when `--data` holds them.
    Injection(injection::InjectionArgs),
}

pub async fn run(config_file: Option<PathBuf>, args: EvalArgs) -> anyhow::Result<()> {
    // The detectors need no configuration; the agent has its own default.
    let what = match args.what {
        EvalCommand::Agent(agent) => {
            let file = config_file.clone().unwrap_or_else(|| PathBuf::from("examples/acme/concierge.toml"));
            return agent::run(crate::load_config(Some(&file))?, agent).await;
        }
        EvalCommand::Pii(pii) => return pii::run(pii),
        EvalCommand::Injection(injection) => return injection::run(injection),
        other => other,
    };
    let config = crate::load_config(config_file.as_deref())?;
    match what {
        EvalCommand::Agent(_) | EvalCommand::Pii(_) | EvalCommand::Injection(_) => unreachable!("handled above"),
        EvalCommand::Retrieval { kb, questions, json } => retrieval::run(&config, kb, questions, json).await,
        EvalCommand::Routing(routing) => routing::run(&config, routing).await,
    }
}
