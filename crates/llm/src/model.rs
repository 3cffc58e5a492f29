//! The `ChatModel` interface and the errors a model call can end with.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::types::{ChatEvent, ChatRequest, ChatResponse};

/// The events of one answer, in order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, LlmError>> + Send>>;

/// Why a model call failed. `is_retryable` sorts them for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("cannot connect to {provider}: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    #[error("{provider} is rate limiting (retry after {retry_after:?})")]
    RateLimited { provider: String, retry_after: Option<Duration> },
    #[error("{provider} failed with HTTP {status}: {message}")]
    Server { provider: String, status: u16, message: String },
    #[error("{provider} refused the request with HTTP {status}: {message}")]
    Rejected { provider: String, status: u16, message: String },
    #[error("{provider} sent a malformed stream: {message}")]
    MalformedStream { provider: String, message: String },
    #[error("{provider}'s stream ended before the answer was complete")]
    Truncated { provider: String },
    #[error("{provider} called tool `{name}` with arguments that are not valid JSON: {message}")]
    InvalidToolArguments { provider: String, name: String, message: String },
    #[error("{provider} called tool `{name}`, which the request did not offer")]
    UnknownTool { provider: String, name: String },
    #[error("the prompt needs {needed} tokens with its answer but {provider} holds {limit}")]
    ContextOverflow { provider: String, needed: u64, limit: u64 },
    #[error("{provider} failed: {message}")]
    Internal { provider: String, message: String },
    #[error("{provider} is not being called: its circuit breaker is open")]
    CircuitOpen { provider: String },
    #[error("no provider could answer: {0}")]
    Exhausted(String),
}

impl LlmError {
    /// Failures that may pass if the same request is sent again: the connection, the
    /// deadline, rate limits and server errors. A malformed answer or a refused request
    /// would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Connect { .. }
                | LlmError::Timeout { .. }
                | LlmError::RateLimited { .. }
                | LlmError::Server { .. }
        )
    }

    /// How long the provider asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A chat model: a provider with a pinned model id.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// `provider/model`, e.g. `openai/gpt-4o-mini-2024-07-18`; recorded on every call.
    fn id(&self) -> &str;

    /// Starts an answer. Errors before the first event (connection, status) come back
    /// here; errors later come as the stream's last item.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError>;

    /// The whole answer: a fold over `stream`, so it is checked exactly like a stream.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        collect(self.stream(request).await?).await
    }
}

/// Folds a stream of events into a response. A stream that ends without a `Finish` event
/// is `Truncated`: half an answer is never presented as a whole one.
pub async fn collect(mut events: EventStream) -> Result<ChatResponse, LlmError> {
    let mut response = ChatResponse::default();
    while let Some(event) = events.next().await {
        response.apply(&event?);
    }
    if response.finish.is_none() {
        return Err(LlmError::Truncated { provider: "stream".into() });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FinishReason, Usage};

    fn events(items: Vec<Result<ChatEvent, LlmError>>) -> EventStream {
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn a_complete_stream_folds_into_one_response() {
        let text = |t: &str| Ok(ChatEvent::TextDelta { text: t.into() });
        let response = collect(events(vec![
            text("Hel"),
            text("lo"),
            Ok(ChatEvent::Usage { usage: Usage { prompt_tokens: 3, completion_tokens: 2 } }),
            Ok(ChatEvent::Finish { reason: FinishReason::Stop }),
        ]))
        .await
        .unwrap();
        assert_eq!(response.text, "Hello");
        assert_eq!(response.usage.unwrap().completion_tokens, 2);
        assert_eq!(response.finish, Some(FinishReason::Stop));
    }

    #[tokio::test]
    async fn a_stream_without_its_finish_is_truncated_not_shorter() {
        let err = collect(events(vec![Ok(ChatEvent::TextDelta { text: "Half an ans".into() })])).await.unwrap_err();
        assert!(matches!(err, LlmError::Truncated { .. }));
    }

    #[test]
    fn only_passing_failures_are_retryable() {
        let p = || "p".to_string();
        assert!(LlmError::Server { provider: p(), status: 503, message: String::new() }.is_retryable());
        assert!(LlmError::RateLimited { provider: p(), retry_after: None }.is_retryable());
        assert!(!LlmError::Rejected { provider: p(), status: 400, message: String::new() }.is_retryable());
        assert!(!LlmError::MalformedStream { provider: p(), message: String::new() }.is_retryable());
    }
}
