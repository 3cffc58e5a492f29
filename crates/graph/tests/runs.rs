//! Runs of small graphs: loops, limits, timeouts, interrupts, events and both checkpointers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierge_core::{Conversation, ConversationId, ConversationStatus, Tenant, TenantId};
use concierge_graph::{
    Checkpointer, Flow, Graph, GraphBuilder, GraphError, GraphEvent, MemoryCheckpointer, Node, NodeContext, NodeError,
    Outcome, Resume, Run, Saved, StoreCheckpointer, END, START,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    visits: Vec<String>,
    count: u32,
    approved: Option<bool>,
}

/// Counts up and records its visit.
struct Tick;

#[async_trait]
impl Node<Ledger, String> for Tick {
    async fn run(&self, state: &mut Ledger, ctx: &NodeContext<String>) -> Result<Flow, NodeError> {
        state.count += 1;
        state.visits.push(format!("{}@{}", ctx.node(), ctx.step()));
        ctx.emit(format!("tick {}", state.count)).await;
        Ok(Flow::Continue)
    }
}

/// Waits for a decision; records it once given.
struct AskApproval;

#[async_trait]
impl Node<Ledger, String> for AskApproval {
    async fn run(&self, state: &mut Ledger, ctx: &NodeContext<String>) -> Result<Flow, NodeError> {
        match ctx.resumed_with() {
            None => Ok(ctx.interrupt("approval", json!({ "count": state.count }))),
            Some(value) => {
                state.approved = Some(value["approve"].as_bool().ok_or_else(|| NodeError::msg("no decision"))?);
                Ok(Flow::Continue)
            }
        }
    }
}

/// Never finishes in time.
struct Stuck;

#[async_trait]
impl Node<Ledger, String> for Stuck {
    async fn run(&self, _: &mut Ledger, _: &NodeContext<String>) -> Result<Flow, NodeError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Flow::Continue)
    }
}

/// Fails the first `failures` times, then ticks.
struct Flaky(AtomicU32);

#[async_trait]
impl Node<Ledger, String> for Flaky {
    async fn run(&self, state: &mut Ledger, ctx: &NodeContext<String>) -> Result<Flow, NodeError> {
        if self.0.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(std::io::Error::other("backend down").into());
        }
        Tick.run(state, ctx).await
    }
}

fn counting_loop(until: u32) -> GraphBuilder<Ledger, String> {
    GraphBuilder::new()
        .node("work", Tick)
        .node("wrap_up", Tick)
        .edge(START, "work")
        .branch(
            "work",
            &["work", "wrap_up"],
            move |s: &Ledger| {
                if s.count < until {
                    "work".into()
                } else {
                    "wrap_up".into()
                }
            },
        )
        .edge("wrap_up", END)
}

fn run<'a>(id: &str, checkpointer: &'a dyn Checkpointer) -> Run<'a, String> {
    Run { id: id.into(), checkpointer, events: None }
}

#[tokio::test]
async fn a_loop_runs_until_its_branch_leaves_and_every_step_is_checkpointed() {
    let graph = counting_loop(3).build().unwrap();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("r1", &saved), Ledger::default()).await.unwrap();
    let Outcome::Finished { state, steps } = outcome else { panic!("not finished: {outcome:?}") };
    assert_eq!(steps, 4);
    assert_eq!(state.visits, ["work@1", "work@2", "work@3", "wrap_up@4"]);
    let history = saved.history("r1");
    let nodes: Vec<(u64, &str, Option<&str>)> =
        history.iter().map(|s| (s.step, s.node.as_str(), s.next.as_deref())).collect();
    assert_eq!(
        nodes,
        [
            (0, START, Some("work")),
            (1, "work", Some("work")),
            (2, "work", Some("work")),
            (3, "work", Some("wrap_up")),
            (4, "wrap_up", None)
        ]
    );
    assert_eq!(history[2].state["count"], 2);
}

#[tokio::test]
async fn a_run_id_is_used_once() {
    let graph = counting_loop(1).build().unwrap();
    let saved = MemoryCheckpointer::default();
    graph.start(&run("once", &saved), Ledger::default()).await.unwrap();
    let again = graph.start(&run("once", &saved), Ledger::default()).await;
    assert!(matches!(again, Err(GraphError::RunExists(id)) if id == "once"));
}

#[tokio::test]
async fn an_endless_loop_stops_at_the_step_limit() {
    let graph = counting_loop(u32::MAX).step_limit(5).build().unwrap();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("endless", &saved), Ledger::default()).await;
    assert!(matches!(outcome, Err(GraphError::StepLimit { limit: 5 })), "{outcome:?}");
    assert_eq!(saved.history("endless").last().map(|s| s.step), Some(5));
}

#[tokio::test]
async fn past_the_step_limit_the_run_goes_to_the_fallback_node() {
    let graph = counting_loop(u32::MAX)
        .node("hand_over", Tick)
        .edge("hand_over", END)
        .step_limit(4)
        .on_step_limit("hand_over")
        .build()
        .unwrap();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("fallback", &saved), Ledger::default()).await.unwrap();
    let Outcome::Finished { state, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(state.visits.last().map(String::as_str), Some("hand_over@5"));
    assert_eq!(state.count, 5);
    assert!(saved.history("fallback").last().unwrap().over_limit);
}

#[tokio::test]
async fn a_node_past_its_timeout_fails_the_run_and_recovery_runs_it_again() {
    let graph = GraphBuilder::new()
        .node("first", Tick)
        .node("stuck", Stuck)
        .edge(START, "first")
        .edge("first", "stuck")
        .edge("stuck", END)
        .timeout("stuck", Duration::from_millis(50))
        .build()
        .unwrap();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("slow", &saved), Ledger::default()).await;
    assert!(
        matches!(&outcome, Err(GraphError::Timeout { node, step: 2, after }) if node == "stuck" && *after == Duration::from_millis(50)),
        "{outcome:?}"
    );
    let latest = saved.latest("slow").await.unwrap().unwrap();
    assert_eq!((latest.step, latest.next.as_deref()), (1, Some("stuck")));
}

#[tokio::test]
async fn a_failed_node_is_retried_by_recovery_from_the_last_checkpoint() {
    let graph = GraphBuilder::new()
        .node("first", Tick)
        .node("flaky", Flaky(AtomicU32::new(1)))
        .edge(START, "first")
        .edge("first", "flaky")
        .edge("flaky", END)
        .build()
        .unwrap();
    let saved = MemoryCheckpointer::default();
    let failed = graph.start(&run("flaky", &saved), Ledger::default()).await;
    match failed {
        Err(GraphError::Node { node, step, error }) => {
            assert_eq!((node.as_str(), step), ("flaky", 2));
            assert_eq!(error.downcast_ref::<std::io::Error>().map(|e| e.to_string()), Some("backend down".into()));
        }
        other => panic!("{other:?}"),
    }
    let outcome = graph.recover(&run("flaky", &saved)).await.unwrap();
    let Outcome::Finished { state, steps: 2 } = outcome else { panic!("{outcome:?}") };
    // `first` ran once: recovery began after its checkpoint. `flaky` kept its step number.
    assert_eq!(state.visits, ["first@1", "flaky@2"]);
}

fn approval_graph() -> Graph<Ledger, String> {
    GraphBuilder::new()
        .node("prepare", Tick)
        .node("approve", AskApproval)
        .node("act", Tick)
        .edge(START, "prepare")
        .edge("prepare", "approve")
        .edge("approve", "act")
        .edge("act", END)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_interrupted_run_waits_and_resumes_with_the_input_it_was_given() {
    let graph = approval_graph();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("refund", &saved), Ledger::default()).await.unwrap();
    let Outcome::Interrupted { interrupt, state } = outcome else { panic!("{outcome:?}") };
    assert_eq!((interrupt.node.as_str(), interrupt.kind.as_str()), ("approve", "approval"));
    assert_eq!(interrupt.payload, json!({ "count": 1 }));
    assert_eq!(state.approved, None);

    // Recovery of a waiting run keeps it waiting, on the same interrupt.
    let Outcome::Interrupted { interrupt: still, .. } = graph.recover(&run("refund", &saved)).await.unwrap() else {
        panic!("recovery ran a waiting run")
    };
    assert_eq!(still.id, interrupt.id);

    let wrong = graph.resume(&run("refund", &saved), Resume { interrupt_id: "nope".into(), value: json!({}) }).await;
    assert!(
        matches!(&wrong, Err(GraphError::WrongInterrupt { waiting, given, .. }) if *waiting == interrupt.id && given == "nope")
    );

    let resume = Resume { interrupt_id: interrupt.id.clone(), value: json!({ "approve": true }) };
    let outcome = graph.resume(&run("refund", &saved), resume.clone()).await.unwrap();
    let Outcome::Finished { state, steps } = outcome else { panic!("{outcome:?}") };
    assert_eq!(state.approved, Some(true));
    assert_eq!(state.visits, ["prepare@1", "act@4"]);
    assert_eq!(steps, 4);

    let twice = graph.resume(&run("refund", &saved), resume).await;
    assert!(matches!(twice, Err(GraphError::NotWaiting { .. })), "{twice:?}");
    let unknown = graph.resume(&run("never", &saved), Resume { interrupt_id: "x".into(), value: json!({}) }).await;
    assert!(matches!(unknown, Err(GraphError::UnknownRun(_))));
}

#[tokio::test]
async fn several_waiting_runs_each_take_only_their_own_input() {
    let graph = approval_graph();
    let saved = MemoryCheckpointer::default();
    let mut waiting = Vec::new();
    for id in ["turn-3", "turn-5"] {
        let Outcome::Interrupted { interrupt, .. } = graph.start(&run(id, &saved), Ledger::default()).await.unwrap()
        else {
            panic!("{id} did not wait")
        };
        waiting.push(interrupt.id);
    }
    assert_ne!(waiting[0], waiting[1]);
    let crossed = Resume { interrupt_id: waiting[1].clone(), value: json!({ "approve": true }) };
    assert!(matches!(graph.resume(&run("turn-3", &saved), crossed).await, Err(GraphError::WrongInterrupt { .. })));

    let deny = Resume { interrupt_id: waiting[0].clone(), value: json!({ "approve": false }) };
    let approve = Resume { interrupt_id: waiting[1].clone(), value: json!({ "approve": true }) };
    // Answered in the other order from the one they were asked in.
    let five = graph.resume(&run("turn-5", &saved), approve).await.unwrap();
    let three = graph.resume(&run("turn-3", &saved), deny).await.unwrap();
    let decided = |o: Outcome<Ledger>| match o {
        Outcome::Finished { state, .. } => state.approved,
        other => panic!("{other:?}"),
    };
    assert_eq!((decided(three), decided(five)), (Some(false), Some(true)));
}

#[tokio::test]
async fn a_run_reports_each_step_and_what_its_nodes_emit_in_order() {
    let graph = approval_graph();
    let saved = MemoryCheckpointer::default();
    let (tx, mut rx) = mpsc::channel(64);
    let run = Run { id: "events".into(), checkpointer: &saved, events: Some(tx) };
    let Outcome::Interrupted { interrupt, .. } = graph.start(&run, Ledger::default()).await.unwrap() else {
        panic!("no interrupt")
    };
    graph.resume(&run, Resume { interrupt_id: interrupt.id.clone(), value: json!({ "approve": true }) }).await.unwrap();
    drop(run);
    let mut seen = Vec::new();
    while let Some(event) = rx.recv().await {
        seen.push(match event {
            GraphEvent::NodeStarted { node, step } => format!("start {node}@{step}"),
            GraphEvent::NodeFinished { node, step, .. } => format!("done {node}@{step}"),
            GraphEvent::Interrupted(i) => format!("wait {}", i.kind),
            GraphEvent::Finished { steps } => format!("finished {steps}"),
            GraphEvent::Node(text) => text,
        });
    }
    assert_eq!(
        seen,
        [
            "start prepare@1",
            "tick 1",
            "done prepare@1",
            "start approve@2",
            "wait approval",
            "start approve@3",
            "done approve@3",
            "start act@4",
            "tick 2",
            "done act@4",
            "finished 4"
        ]
    );
}

#[tokio::test]
async fn a_checkpoint_naming_a_node_the_graph_lacks_is_an_error_not_a_panic() {
    let graph = counting_loop(1).build().unwrap();
    let saved = MemoryCheckpointer::default();
    let stale = Saved {
        step: 3,
        node: "renamed".into(),
        next: Some("gone".into()),
        state: serde_json::to_value(Ledger::default()).unwrap(),
        interrupt: None,
        over_limit: false,
    };
    saved.save("old", &stale).await.unwrap();
    let outcome = graph.recover(&run("old", &saved)).await;
    assert!(matches!(&outcome, Err(GraphError::UnknownNode(node)) if node == "gone"), "{outcome:?}");
}

#[tokio::test]
async fn a_branch_to_an_undeclared_target_stops_the_run() {
    let graph = GraphBuilder::new()
        .node("a", Tick)
        .edge(START, "a")
        .branch("a", &["a", END], |_: &Ledger| "b".into())
        .build()
        .unwrap();
    let saved = MemoryCheckpointer::default();
    let outcome = graph.start(&run("stray", &saved), Ledger::default()).await;
    assert!(matches!(outcome, Err(GraphError::StrayBranch { from, to }) if from == "a" && to == "b"));
}

async fn sqlite_conversation() -> (tempfile::TempDir, Arc<dyn concierge_store::Store>, TenantId, ConversationId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("graph.db").display());
    let store = concierge_store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let tenant: TenantId = "acme".parse().unwrap();
    let now = concierge_core::now();
    store
        .upsert_tenant(&Tenant { id: tenant.clone(), name: "Acme".into(), tier: "free".into(), created_at: now })
        .await
        .unwrap();
    let conversation = Conversation {
        id: ConversationId::new(),
        tenant_id: tenant.clone(),
        customer_ref: None,
        channel: "test".into(),
        status: ConversationStatus::Open,
        created_at: now,
        updated_at: now,
    };
    store.create_conversation(&conversation).await.unwrap();
    (dir, store, tenant, conversation.id)
}

#[tokio::test]
async fn the_store_keeps_checkpoints_and_refuses_to_overwrite_a_step() {
    let (_dir, store, tenant, conversation) = sqlite_conversation().await;
    let checkpointer = StoreCheckpointer::new(store, tenant, conversation);
    let graph = approval_graph();
    let Outcome::Interrupted { interrupt, .. } =
        graph.start(&run("stored", &checkpointer), Ledger::default()).await.unwrap()
    else {
        panic!("no interrupt")
    };
    let latest = checkpointer.latest("stored").await.unwrap().unwrap();
    assert_eq!(latest.interrupt.as_ref(), Some(&interrupt));
    assert_eq!((latest.step, latest.node.as_str()), (2, "approve"));
    let again = Saved { step: 2, ..latest.clone() };
    assert!(matches!(
        checkpointer.save("stored", &again).await,
        Err(concierge_graph::CheckpointError::Conflict { step: 2, .. })
    ));

    let value = json!({ "approve": true });
    let outcome = graph.resume(&run("stored", &checkpointer), Resume { interrupt_id: interrupt.id, value }).await;
    assert!(matches!(outcome, Ok(Outcome::Finished { steps: 4, .. })), "{outcome:?}");
    assert_eq!(checkpointer.latest("nothing").await.unwrap(), None);
}
