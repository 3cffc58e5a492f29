//! Test doubles shared by the model-layer test suites: a scripted model and a clock that
//! only moves when a test moves it. Each suite uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierge_llm::resilience::Clock;
use concierge_llm::{ChatEvent, ChatModel, ChatRequest, EventStream, FinishReason, LlmError};

/// What the scripted model does on one call.
pub enum Outcome {
    /// Starts an answer made of these items (an `Err` item fails mid-stream).
    Answer(Vec<Result<ChatEvent, LlmError>>),
    /// Fails before the first event.
    Fail(LlmError),
}

/// Test double: a model that plays back a queue of outcomes, one per call, and counts its
/// calls. Once the queue is empty every call answers with `fallback(n)`, n being the call's
/// number.
pub struct ScriptedModel {
    id: String,
    script: Mutex<VecDeque<Outcome>>,
    calls: AtomicUsize,
    fallback: fn(usize) -> String,
}

impl ScriptedModel {
    /// Answers "ok" once the script is played.
    pub fn new(id: &str, script: Vec<Outcome>) -> Arc<Self> {
        Self::with_fallback(id, script, |_| "ok".into())
    }

    /// Answers "answer #n" once the script is played, so a replayed answer is told apart
    /// from a fresh one.
    pub fn numbered(id: &str, script: Vec<Outcome>) -> Arc<Self> {
        Self::with_fallback(id, script, |n| format!("answer #{n}"))
    }

    fn with_fallback(id: &str, script: Vec<Outcome>, fallback: fn(usize) -> String) -> Arc<Self> {
        Arc::new(Self { id: id.into(), script: Mutex::new(script.into()), calls: AtomicUsize::new(0), fallback })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ChatModel for ScriptedModel {
    fn id(&self) -> &str {
        &self.id
    }

    async fn stream(&self, _request: &ChatRequest) -> Result<EventStream, LlmError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.script.lock().unwrap().pop_front().unwrap_or_else(|| answer(&(self.fallback)(call)));
        match outcome {
            Outcome::Answer(items) => Ok(Box::pin(futures::stream::iter(items))),
            Outcome::Fail(error) => Err(error),
        }
    }
}

/// A whole answer of `text`.
pub fn answer(text: &str) -> Outcome {
    Outcome::Answer(vec![
        Ok(ChatEvent::TextDelta { text: text.into() }),
        Ok(ChatEvent::Finish { reason: FinishReason::Stop }),
    ])
}

/// A retryable failure.
pub fn unavailable() -> LlmError {
    LlmError::Server { provider: "scripted".into(), status: 503, message: "overloaded".into() }
}

/// A clock that only moves when the test moves it.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    pub fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Arc::new(move || *now.lock().unwrap())
    }
}
