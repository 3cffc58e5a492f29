//! Where runs are saved between steps: the [`Checkpointer`] trait, an in-memory one and
//! one that keeps them in the Store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use concierge_core::{Checkpoint, ConversationId, TenantId};
use concierge_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::Interrupt;

/// A run as it stood after one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// How many nodes the run has completed (0: none yet, saved on start).
    pub step: u64,
    /// The node that completed this step ([`START`](crate::START) for step 0).
    pub node: String,
    /// What runs next; `None` once the run has reached [`END`](crate::END).
    pub next: Option<String>,
    /// The state, as JSON.
    pub state: Value,
    /// The input the run waits for, if it is paused.
    pub interrupt: Option<Interrupt>,
    /// Whether the run has passed its step limit and gone to the fallback node.
    #[serde(default)]
    pub over_limit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Another process saved this step of this run first (two resumes of one interrupt).
    #[error("step {step} of run {run} was saved by someone else first")]
    Conflict { run: String, step: u64 },
    #[error("saved run {run} cannot be read: {message}")]
    Corrupt { run: String, message: String },
    #[error("checkpoint storage failed: {0}")]
    Storage(String),
}

/// Keeps each run's checkpoints; the latest is what a run resumes from.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Saves a step. A step already saved for this run is a [`CheckpointError::Conflict`]:
    /// checkpoints are never overwritten.
    async fn save(&self, run: &str, saved: &Saved) -> Result<(), CheckpointError>;

    /// The run's highest step, if it has any.
    async fn latest(&self, run: &str) -> Result<Option<Saved>, CheckpointError>;
}

/// Checkpoints in this process's memory: for tests and for runs nobody needs to recover.
#[derive(Default)]
pub struct MemoryCheckpointer {
    runs: Mutex<HashMap<String, Vec<Saved>>>,
}

impl MemoryCheckpointer {
    /// Every saved step of `run`, oldest first.
    pub fn history(&self, run: &str) -> Vec<Saved> {
        self.runs.lock().map(|runs| runs.get(run).cloned().unwrap_or_default()).unwrap_or_default()
    }
}

#[async_trait]
impl Checkpointer for MemoryCheckpointer {
    async fn save(&self, run: &str, saved: &Saved) -> Result<(), CheckpointError> {
        let mut runs = self.runs.lock().map_err(|_| CheckpointError::Storage("poisoned".into()))?;
        let steps = runs.entry(run.to_owned()).or_default();
        if steps.iter().any(|s| s.step == saved.step) {
            return Err(CheckpointError::Conflict { run: run.to_owned(), step: saved.step });
        }
        steps.push(saved.clone());
        Ok(())
    }

    async fn latest(&self, run: &str) -> Result<Option<Saved>, CheckpointError> {
        let runs = self.runs.lock().map_err(|_| CheckpointError::Storage("poisoned".into()))?;
        Ok(runs.get(run).and_then(|steps| steps.iter().max_by_key(|s| s.step).cloned()))
    }
}

/// Checkpoints in the Store's `checkpoints` table, under one conversation of one tenant:
/// they survive the process, and a conversation's deletion takes them with it.
pub struct StoreCheckpointer {
    store: Arc<dyn Store>,
    tenant: TenantId,
    conversation: ConversationId,
}

/// The version of the envelope a [`Saved`] is stored in, for reading old checkpoints
/// after the shape changes.
const ENVELOPE_VERSION: u64 = 1;

impl StoreCheckpointer {
    pub fn new(store: Arc<dyn Store>, tenant: TenantId, conversation: ConversationId) -> Self {
        StoreCheckpointer { store, tenant, conversation }
    }
}

#[async_trait]
impl Checkpointer for StoreCheckpointer {
    async fn save(&self, run: &str, saved: &Saved) -> Result<(), CheckpointError> {
        let envelope = serde_json::json!({
            "v": ENVELOPE_VERSION,
            "next": saved.next,
            "state": saved.state,
            "interrupt": saved.interrupt,
            "over_limit": saved.over_limit,
        });
        let checkpoint = Checkpoint {
            run_id: run.to_owned(),
            conversation_id: self.conversation,
            tenant_id: self.tenant.clone(),
            step: i64::try_from(saved.step).unwrap_or(i64::MAX),
            node: saved.node.clone(),
            state: envelope,
            created_at: concierge_core::now(),
        };
        self.store.put_checkpoint(&checkpoint).await.map_err(|error| match error {
            StoreError::Conflict { .. } => CheckpointError::Conflict { run: run.to_owned(), step: saved.step },
            other => CheckpointError::Storage(other.to_string()),
        })
    }

    async fn latest(&self, run: &str) -> Result<Option<Saved>, CheckpointError> {
        let Some(checkpoint) =
            self.store.latest_checkpoint(run).await.map_err(|e| CheckpointError::Storage(e.to_string()))?
        else {
            return Ok(None);
        };
        let corrupt = |message: String| CheckpointError::Corrupt { run: run.to_owned(), message };
        if checkpoint.tenant_id != self.tenant || checkpoint.conversation_id != self.conversation {
            return Err(corrupt("it belongs to another conversation".into()));
        }
        #[derive(Deserialize)]
        struct Envelope {
            v: u64,
            next: Option<String>,
            state: Value,
            interrupt: Option<Interrupt>,
            #[serde(default)]
            over_limit: bool,
        }
        let envelope: Envelope = serde_json::from_value(checkpoint.state).map_err(|e| corrupt(e.to_string()))?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(corrupt(format!("envelope version {} (this build reads {ENVELOPE_VERSION})", envelope.v)));
        }
        Ok(Some(Saved {
            step: u64::try_from(checkpoint.step).map_err(|e| corrupt(e.to_string()))?,
            node: checkpoint.node,
            next: envelope.next,
            state: envelope.state,
            interrupt: envelope.interrupt,
            over_limit: envelope.over_limit,
        }))
    }
}
