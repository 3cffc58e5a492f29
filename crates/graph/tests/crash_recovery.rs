//! A run in a real process, killed in the middle of a step that has already had its side
//! effect, then recovered by another process from the checkpoints in a SQLite file.
//!
//! The test binary starts itself again as the child (the same test, with an environment
//! variable naming the directory to work in) and kills it with SIGKILL: no destructor, no
//! flush, nothing but what was committed survives.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use concierge_core::{Conversation, ConversationId, ConversationStatus, Tenant, TenantId};
use concierge_graph::{
    Flow, Graph, GraphBuilder, Node, NodeContext, NodeError, Outcome, Run, StoreCheckpointer, END, START,
};
use serde::{Deserialize, Serialize};

const CHILD_DIR: &str = "CONCIERGE_GRAPH_CRASH_DIR";
const CHILD_CONVERSATION: &str = "CONCIERGE_GRAPH_CRASH_CONVERSATION";
const RUN: &str = "conversation-1:turn-1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Order {
    visits: Vec<String>,
    receipt: Option<String>,
}

/// Appends one line to a file, durably.
fn append(path: &Path, line: &str) {
    let mut file = OpenOptions::new().create(true).append(true).open(path).unwrap();
    writeln!(file, "{line}").unwrap();
    file.sync_all().unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Records that it ran, in a file shared by both processes.
struct Step {
    dir: PathBuf,
}

#[async_trait]
impl Node<Order, ()> for Step {
    async fn run(&self, state: &mut Order, ctx: &NodeContext<()>) -> Result<Flow, NodeError> {
        append(&self.dir.join("runs"), &format!("{}@{}", ctx.node(), ctx.step()));
        state.visits.push(format!("{}@{}", ctx.node(), ctx.step()));
        Ok(Flow::Continue)
    }
}

/// Charges the customer through a "backend" that keeps what it has done by idempotency
/// key, as a payment API does; in the child it then hangs, so the kill lands after the
/// charge and before the step's checkpoint.
struct Charge {
    dir: PathBuf,
    hang_after_charging: bool,
}

#[async_trait]
impl Node<Order, ()> for Charge {
    async fn run(&self, state: &mut Order, ctx: &NodeContext<()>) -> Result<Flow, NodeError> {
        let key = format!("{}:{}", ctx.run_id(), ctx.step());
        append(&self.dir.join("runs"), &format!("{}@{}", ctx.node(), ctx.step()));
        append(&self.dir.join("attempts"), &key);
        let charges = self.dir.join("charges");
        if !lines(&charges).contains(&key) {
            append(&charges, &key);
        }
        if self.hang_after_charging {
            append(&self.dir.join("charged"), "yes");
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        state.receipt = Some(key);
        state.visits.push(format!("{}@{}", ctx.node(), ctx.step()));
        Ok(Flow::Continue)
    }
}

fn graph(dir: &Path, child: bool) -> Graph<Order, ()> {
    GraphBuilder::new()
        .node("prepare", Step { dir: dir.to_owned() })
        .node("charge", Charge { dir: dir.to_owned(), hang_after_charging: child })
        .node("confirm", Step { dir: dir.to_owned() })
        .edge(START, "prepare")
        .edge("prepare", "charge")
        .edge("charge", "confirm")
        .edge("confirm", END)
        .default_timeout(Duration::from_secs(900))
        .build()
        .unwrap()
}

async fn store(dir: &Path) -> Arc<dyn concierge_store::Store> {
    let store = concierge_store::open(&format!("sqlite:{}", dir.join("store.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

/// The child: starts the run and is killed inside `charge`.
async fn child(dir: PathBuf, conversation: ConversationId) {
    let store = store(&dir).await;
    let checkpointer = StoreCheckpointer::new(store, tenant(), conversation);
    let run = Run { id: RUN.into(), checkpointer: &checkpointer, events: None };
    let outcome = graph(&dir, true).start(&run, Order::default()).await;
    panic!("the child should have been killed, but its run ended: {outcome:?}");
}

#[tokio::test]
async fn a_run_killed_after_a_side_effect_recovers_to_the_same_end_without_repeating_it() {
    if let (Ok(dir), Ok(conversation)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_CONVERSATION)) {
        return child(PathBuf::from(dir), conversation.parse().unwrap()).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let now = concierge_core::now();
    store
        .upsert_tenant(&Tenant { id: tenant(), name: "Acme".into(), tier: "free".into(), created_at: now })
        .await
        .unwrap();
    let conversation = ConversationId::new();
    let record = Conversation {
        id: conversation,
        tenant_id: tenant(),
        customer_ref: None,
        channel: "test".into(),
        status: ConversationStatus::Open,
        created_at: now,
        updated_at: now,
    };
    store.create_conversation(&record).await.unwrap();

    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_run_killed_after_a_side_effect_recovers_to_the_same_end_without_repeating_it"])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_CONVERSATION, conversation.to_string())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&dir.path().join("charged")).is_empty() {
        if let Some(status) = process.try_wait().unwrap() {
            panic!("the child ended on its own ({status}) before charging");
        }
        assert!(Instant::now() < deadline, "the child did not charge within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill().unwrap();
    process.wait().unwrap();
    assert_eq!(lines(&dir.path().join("charges")).len(), 1);

    // This process recovers the run from the store.
    let checkpointer = StoreCheckpointer::new(store, tenant(), conversation);
    let run = Run { id: RUN.into(), checkpointer: &checkpointer, events: None };
    let outcome = graph(dir.path(), false).recover(&run).await.unwrap();
    let Outcome::Finished { state, steps } = outcome else { panic!("{outcome:?}") };
    assert_eq!(steps, 3);
    assert_eq!(state.visits, ["prepare@1", "charge@2", "confirm@3"]);
    // `charge` ran twice under one key; the backend charged once. `prepare`, checkpointed
    // before the kill, was not run again.
    let key = format!("{RUN}:2");
    assert_eq!(lines(&dir.path().join("attempts")), [key.clone(), key.clone()]);
    assert_eq!(lines(&dir.path().join("charges")), std::slice::from_ref(&key));
    assert_eq!(state.receipt, Some(key));
    assert_eq!(lines(&dir.path().join("runs")), ["prepare@1", "charge@2", "charge@2", "confirm@3"]);
}
