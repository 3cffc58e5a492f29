//! What every HTTP provider shares: sending with a deadline, sorting failures into
//! `LlmError`, reading Server-Sent Events, and validating assembled tool calls.

use std::time::{Duration, SystemTime};

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::model::LlmError;
use crate::types::{ChatRequest, ToolCall};

/// Longest piece of an error body kept in an error message.
const MAX_ERROR_BODY: usize = 500;

/// Sends `request` with the call's deadline and returns the response if its status is a
/// success; otherwise the failure, sorted: 429 → `RateLimited` (with `Retry-After`),
/// 5xx → `Server`, other 4xx → `Rejected`.
pub(crate) async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
    deadline: Duration,
) -> Result<reqwest::Response, LlmError> {
    let response = request.timeout(deadline).send().await.map_err(|e| transport_error(provider, deadline, &e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = response.text().await.unwrap_or_default();
    let message: String = body.chars().take(MAX_ERROR_BODY).collect();
    let provider = provider.to_owned();
    Err(match status.as_u16() {
        429 => LlmError::RateLimited { provider, retry_after },
        code if code >= 500 => LlmError::Server { provider, status: code, message },
        code => LlmError::Rejected { provider, status: code, message },
    })
}

/// A transport failure: a deadline passed, or the connection could not be made or broke.
pub(crate) fn transport_error(provider: &str, deadline: Duration, error: &reqwest::Error) -> LlmError {
    if error.is_timeout() {
        LlmError::Timeout { provider: provider.to_owned(), after: deadline }
    } else {
        LlmError::Connect { provider: provider.to_owned(), message: error.to_string() }
    }
}

/// `Retry-After` as a delay: delta-seconds, or an HTTP date relative to `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The Server-Sent Events of a streaming response. A body that breaks off mid-stream is
/// `Truncated`; bytes that are not SSE are `MalformedStream`.
pub(crate) fn sse_events(
    provider: &str,
    deadline: Duration,
    response: reqwest::Response,
) -> impl Stream<Item = Result<eventsource_stream::Event, LlmError>> + Send + 'static {
    let provider = provider.to_owned();
    response.bytes_stream().eventsource().map(move |item| {
        item.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(t) if t.is_timeout() => {
                LlmError::Timeout { provider: provider.clone(), after: deadline }
            }
            eventsource_stream::EventStreamError::Transport(_) => LlmError::Truncated { provider: provider.clone() },
            other => LlmError::MalformedStream { provider: provider.clone(), message: other.to_string() },
        })
    })
}

/// Checks an assembled tool call: its name must be one the request offered and its
/// arguments valid JSON (an empty argument string means `{}`).
pub(crate) fn validated_tool_call(
    provider: &str,
    request: &ChatRequest,
    id: String,
    name: String,
    arguments: &str,
) -> Result<ToolCall, LlmError> {
    if !request.tools.iter().any(|t| t.name == name) {
        return Err(LlmError::UnknownTool { provider: provider.to_owned(), name });
    }
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    let arguments = serde_json::from_str(text).map_err(|e| LlmError::InvalidToolArguments {
        provider: provider.to_owned(),
        name: name.clone(),
        message: e.to_string(),
    })?;
    Ok(ToolCall { id, name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDefinition;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn tool_calls_are_checked_for_name_and_json() {
        let request = ChatRequest {
            tools: vec![ToolDefinition {
                name: "get_order".into(),
                description: String::new(),
                parameters: serde_json::json!({}),
            }],
            ..Default::default()
        };
        let call = validated_tool_call("p", &request, "1".into(), "get_order".into(), r#"{"order_id":"A-1"}"#).unwrap();
        assert_eq!(call.arguments["order_id"], "A-1");
        assert_eq!(
            validated_tool_call("p", &request, "1".into(), "get_order".into(), "").unwrap().arguments,
            serde_json::json!({})
        );
        assert!(matches!(
            validated_tool_call("p", &request, "1".into(), "get_order".into(), r#"{"order_id":"#),
            Err(LlmError::InvalidToolArguments { .. })
        ));
        assert!(matches!(
            validated_tool_call("p", &request, "1".into(), "drop_tables".into(), "{}"),
            Err(LlmError::UnknownTool { .. })
        ));
    }
}
