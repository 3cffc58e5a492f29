//! Running a graph: start, resume after an interrupt, recover after a crash. One loop
//! serves all three; they differ only in where the loop begins.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::checkpoint::{CheckpointError, Checkpointer, Saved};
use crate::graph::{Flow, Graph, Interrupt, NodeError, END, START};

/// One run of a graph: its id (unique per run: it keys the checkpoints, and nodes derive
/// idempotency keys from it), where it is saved, and where its events go.
pub struct Run<'a, E> {
    pub id: String,
    pub checkpointer: &'a dyn Checkpointer,
    /// Events are sent as they happen; a closed receiver (a client gone) stops nothing.
    pub events: Option<mpsc::Sender<GraphEvent<E>>>,
}

/// What a run says as it goes: its own progress, and whatever its nodes emit.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphEvent<E> {
    NodeStarted {
        node: String,
        step: u64,
    },
    NodeFinished {
        node: String,
        step: u64,
        elapsed: Duration,
    },
    /// The run is saved, waiting for input.
    Interrupted(Interrupt),
    Finished {
        steps: u64,
    },
    /// Emitted by a node through [`NodeContext::emit`].
    Node(E),
}

/// The input a paused run waits for, naming the interrupt it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub interrupt_id: String,
    pub value: Value,
}

/// Where a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    /// It reached END.
    Finished { state: S, steps: u64 },
    /// It is saved, waiting for `interrupt` to be answered.
    Interrupted { state: S, interrupt: Interrupt },
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("node `{node}` failed at step {step}: {error}")]
    Node { node: String, step: u64, error: NodeError },
    #[error("node `{node}` took longer than {after:?} at step {step}")]
    Timeout { node: String, step: u64, after: Duration },
    #[error("the run took more than {limit} steps")]
    StepLimit { limit: u32 },
    #[error("the branch after `{from}` chose `{to}`, which it does not declare")]
    StrayBranch { from: String, to: String },
    #[error("run {0} has no checkpoint")]
    UnknownRun(String),
    #[error("the run's checkpoint names `{0}`, which this graph does not have")]
    UnknownNode(String),
    #[error("run {0} already has checkpoints: a run id is used once")]
    RunExists(String),
    #[error("run {run} is not waiting for input")]
    NotWaiting { run: String },
    #[error("run {run} is waiting for interrupt {waiting}, not {given}")]
    WrongInterrupt { run: String, waiting: String, given: String },
    #[error("the state does not convert to or from JSON: {0}")]
    State(serde_json::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What a node knows about the step it runs in.
pub struct NodeContext<E> {
    run_id: String,
    node: String,
    step: u64,
    resumed_with: Option<Value>,
    events: Option<mpsc::Sender<GraphEvent<E>>>,
}

impl<E> NodeContext<E> {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// This step's number, the same each time the step runs (after a crash too): with the
    /// run id, the key for anything that must happen once.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The input this node was resumed with, when it paused the run last time it ran.
    pub fn resumed_with(&self) -> Option<&Value> {
        self.resumed_with.as_ref()
    }

    /// Pauses the run for input of `kind`; the returned flow is the node's answer.
    pub fn interrupt(&self, kind: &str, payload: Value) -> Flow {
        self.interrupt_with_id(uuid::Uuid::new_v4().to_string(), kind, payload)
    }

    /// Pauses the run under an id the caller chose (e.g. the approval's own id), so the
    /// input can be addressed by it.
    pub fn interrupt_with_id(&self, id: String, kind: &str, payload: Value) -> Flow {
        Flow::Interrupt(Interrupt { id, node: self.node.clone(), kind: kind.to_owned(), payload })
    }

    /// Sends `event` to whoever follows the run.
    pub async fn emit(&self, event: E) {
        if let Some(events) = &self.events {
            let _ = events.send(GraphEvent::Node(event)).await;
        }
    }
}

impl<S, E> Graph<S, E>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
    E: Send + 'static,
{
    /// Runs from the entry node on `state`. The run id must be new.
    pub async fn start(&self, run: &Run<'_, E>, state: S) -> Result<Outcome<S>, GraphError> {
        if run.checkpointer.latest(&run.id).await?.is_some() {
            return Err(GraphError::RunExists(run.id.clone()));
        }
        let entry = self.next_after(START, &state)?;
        let saved = Saved {
            step: 0,
            node: START.to_owned(),
            next: Some(entry),
            state: serde_json::to_value(&state).map_err(GraphError::State)?,
            interrupt: None,
            over_limit: false,
        };
        run.checkpointer.save(&run.id, &saved).await?;
        self.drive(run, saved, state, None).await
    }

    /// Answers the interrupt a run is waiting on: the node that paused runs again, with
    /// `resume.value` as [`NodeContext::resumed_with`]. Refused when the run waits on
    /// another interrupt or on none.
    pub async fn resume(&self, run: &Run<'_, E>, resume: Resume) -> Result<Outcome<S>, GraphError> {
        let saved = run.checkpointer.latest(&run.id).await?.ok_or_else(|| GraphError::UnknownRun(run.id.clone()))?;
        let Some(waiting) = &saved.interrupt else {
            return Err(GraphError::NotWaiting { run: run.id.clone() });
        };
        if waiting.id != resume.interrupt_id {
            return Err(GraphError::WrongInterrupt {
                run: run.id.clone(),
                waiting: waiting.id.clone(),
                given: resume.interrupt_id,
            });
        }
        let state = serde_json::from_value(saved.state.clone()).map_err(GraphError::State)?;
        self.drive(run, saved, state, Some(resume.value)).await
    }

    /// Continues a run from its last checkpoint, as after a crash: the node that was
    /// running runs again with the same step number. A run that was waiting stays waiting,
    /// and a finished one is finished.
    pub async fn recover(&self, run: &Run<'_, E>) -> Result<Outcome<S>, GraphError> {
        let saved = run.checkpointer.latest(&run.id).await?.ok_or_else(|| GraphError::UnknownRun(run.id.clone()))?;
        let state: S = serde_json::from_value(saved.state.clone()).map_err(GraphError::State)?;
        if let Some(interrupt) = saved.interrupt {
            return Ok(Outcome::Interrupted { state, interrupt });
        }
        self.drive(run, saved, state, None).await
    }

    /// The loop: from the step after `saved`, one node at a time, a checkpoint after each,
    /// until END or an interrupt.
    async fn drive(
        &self,
        run: &Run<'_, E>,
        mut saved: Saved,
        mut state: S,
        mut resumed_with: Option<Value>,
    ) -> Result<Outcome<S>, GraphError> {
        // A paused run's checkpoint names the node that paused as its own `node`.
        let mut next = if saved.interrupt.is_some() { Some(saved.node.clone()) } else { saved.next.clone() };
        let mut over_limit = saved.over_limit;
        while let Some(name) = next.filter(|n| n != END) {
            let step = saved.step + 1;
            let name = match self.check_limit(step, over_limit)? {
                Some(fallback) => {
                    over_limit = true;
                    fallback
                }
                None => name,
            };
            // A checkpoint saved by another version of the graph may name a node it lacks.
            let entry = self.nodes.get(&name).ok_or_else(|| GraphError::UnknownNode(name.clone()))?;
            let timeout = entry.timeout.unwrap_or(self.default_timeout);
            send(run, GraphEvent::NodeStarted { node: name.clone(), step }).await;
            let ctx = NodeContext {
                run_id: run.id.clone(),
                node: name.clone(),
                step,
                resumed_with: resumed_with.take(),
                events: run.events.clone(),
            };
            let started = Instant::now();
            let flow = match tokio::time::timeout(timeout, entry.node.run(&mut state, &ctx)).await {
                Err(_) => return Err(GraphError::Timeout { node: name, step, after: timeout }),
                Ok(Err(error)) => return Err(GraphError::Node { node: name, step, error }),
                Ok(Ok(flow)) => flow,
            };
            let json = serde_json::to_value(&state).map_err(GraphError::State)?;
            match flow {
                Flow::Continue => {
                    let after = self.next_after(&name, &state)?;
                    saved = Saved {
                        step,
                        node: name.clone(),
                        next: (after != END).then(|| after.clone()),
                        state: json,
                        interrupt: None,
                        over_limit,
                    };
                    run.checkpointer.save(&run.id, &saved).await?;
                    send(run, GraphEvent::NodeFinished { node: name, step, elapsed: started.elapsed() }).await;
                    next = saved.next.clone();
                }
                Flow::Interrupt(interrupt) => {
                    saved = Saved {
                        step,
                        node: name,
                        next: None,
                        state: json,
                        interrupt: Some(interrupt.clone()),
                        over_limit,
                    };
                    run.checkpointer.save(&run.id, &saved).await?;
                    send(run, GraphEvent::Interrupted(interrupt.clone())).await;
                    return Ok(Outcome::Interrupted { state, interrupt });
                }
            }
        }
        send(run, GraphEvent::Finished { steps: saved.step }).await;
        Ok(Outcome::Finished { state, steps: saved.step })
    }

    /// Whether step `step` may run: `Ok(None)` yes, `Ok(Some(node))` not as planned but at
    /// the fallback node, `Err` not at all.
    fn check_limit(&self, step: u64, over_limit: bool) -> Result<Option<String>, GraphError> {
        let limit = u64::from(self.step_limit);
        match (&self.on_step_limit, over_limit) {
            (_, false) if step <= limit => Ok(None),
            (Some(fallback), false) => Ok(Some(fallback.clone())),
            (Some(_), true) if step <= 2 * limit => Ok(None),
            _ => Err(GraphError::StepLimit { limit: self.step_limit }),
        }
    }
}

async fn send<E>(run: &Run<'_, E>, event: GraphEvent<E>) {
    if let Some(events) = &run.events {
        let _ = events.send(event).await;
    }
}
