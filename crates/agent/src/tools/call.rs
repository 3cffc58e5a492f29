//! Calling a tool: validate, call over HTTP once per idempotency key, audit.

use std::time::{Duration, Instant};

use concierge_core::{ConversationId, TenantId, ToolCallOutcome, ToolCallRecord};
use concierge_store::{Store, StoreError};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};

use super::spec::{HttpMethod, ToolFormat};
use super::{xml, CompiledTool, ToolRegistry};

/// Where a call happens. The idempotency key is derived from it, so the same step of the
/// same turn never calls a backend twice, even after a crash and a resume.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    /// The sequence number of the customer message being answered.
    pub turn: i64,
    /// The tool step within that turn.
    pub step: u32,
}

impl CallContext {
    pub fn idempotency_key(&self, tool: &str) -> String {
        format!("{}:{}:{}:{tool}", self.conversation, self.turn, self.step)
    }

    /// The turn an idempotency key made by [`idempotency_key`](Self::idempotency_key) was
    /// made in.
    pub fn turn_of_key(key: &str) -> Option<i64> {
        key.split(':').nth(1)?.parse().ok()
    }
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallResult {
    pub tool: String,
    pub outcome: ToolCallOutcome,
    /// The backend's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The parsed response (JSON, or a SOAP response's leaves), or what went wrong.
    pub data: Value,
    pub latency_ms: i64,
    /// True when the result came from the audit log of an earlier identical call.
    pub replayed: bool,
}

impl ToolCallResult {
    pub fn is_ok(&self) -> bool {
        self.outcome == ToolCallOutcome::Ok
    }
}

/// A call that was refused before reaching the backend, or could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named `{0}`")]
    Unknown(String),
    #[error("invalid arguments for `{tool}`: {}", problems.join("; "))]
    InvalidArguments { tool: String, problems: Vec<String> },
    #[error("body template: {0}")]
    Template(String),
    #[error("audit log: {0}")]
    Audit(#[from] StoreError),
}

impl ToolRegistry {
    /// Validates `args`, calls the tool (or replays the recorded result of the same call),
    /// and writes the call to the audit log, with who approved it when someone had to. A
    /// backend that fails or times out is a result with that outcome, not an error: the
    /// caller decides what the customer hears.
    pub async fn call(
        &self,
        store: &dyn Store,
        ctx: &CallContext,
        name: &str,
        args: Value,
        approved_by: Option<&str>,
    ) -> Result<ToolCallResult, ToolError> {
        let tool = self.tool(name).ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        let problems = Self::argument_errors(tool, &args);
        if !problems.is_empty() {
            return Err(ToolError::InvalidArguments { tool: name.to_owned(), problems });
        }
        let key = ctx.idempotency_key(name);
        if let Some(done) = store.tool_call(&key).await? {
            return Ok(replayed(done));
        }
        let started = Instant::now();
        let (outcome, status, data) = self.send(tool, &args, &key).await?;
        let stage = concierge_core::metric::STAGE_SECONDS;
        metrics::histogram!(stage, "stage" => "tool").record(started.elapsed().as_secs_f64());
        let result = ToolCallResult {
            tool: name.to_owned(),
            outcome,
            status,
            data,
            latency_ms: started.elapsed().as_millis() as i64,
            replayed: false,
        };
        // What went out and came back, for an operator tracing a turn at debug level (the
        // log writer redacts the personal data in it).
        tracing::debug!(tool = name, arguments = %args, outcome = ?result.outcome, status = ?result.status,
            latency_ms = result.latency_ms, data = %result.data, "tool called");
        let record = ToolCallRecord {
            idempotency_key: key.clone(),
            tenant_id: ctx.tenant.clone(),
            conversation_id: Some(ctx.conversation),
            tool: name.to_owned(),
            arguments: args,
            result: Some(json!({ "status": result.status, "data": result.data })),
            outcome: result.outcome,
            latency_ms: result.latency_ms,
            approved_by: approved_by.map(str::to_owned),
            created_at: concierge_core::now(),
        };
        match store.record_tool_call(&record).await {
            Ok(()) => Ok(result),
            // Another worker made the same call first; its record is the truth.
            Err(StoreError::Conflict { .. }) => match store.tool_call(&key).await? {
                Some(done) => Ok(replayed(done)),
                None => Ok(result),
            },
            Err(e) => Err(e.into()),
        }
    }

    async fn send(
        &self,
        tool: &CompiledTool,
        args: &Value,
        key: &str,
    ) -> Result<(ToolCallOutcome, Option<u16>, Value), ToolError> {
        let spec = &tool.spec;
        let url = fill_path(&tool.base_url, &spec.path, args);
        let method = match spec.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut request = self
            .client()
            .request(method, url)
            .timeout(Duration::from_millis(spec.timeout_ms))
            .header("idempotency-key", key);
        if let Some(token) = &tool.token {
            request = request.bearer_auth(token.expose_secret());
        }
        request = match spec.format {
            ToolFormat::Soap => {
                let body = self.render_body(&spec.name, "body.xml", args)?.unwrap_or_default();
                let action = spec.soap_action.clone().unwrap_or_default();
                request.header("content-type", "text/xml; charset=utf-8").header("soapaction", action).body(body)
            }
            ToolFormat::Json if spec.method == HttpMethod::Get => request,
            ToolFormat::Json => match self.render_body(&spec.name, "body.json", args)? {
                Some(body) => request.header("content-type", "application/json").body(body),
                None => request.json(args),
            },
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Ok((ToolCallOutcome::Timeout, None, json!({ "error": "the backend did not answer in time" })))
            }
            Err(e) => {
                return Ok((ToolCallOutcome::Error, None, json!({ "error": format!("cannot reach the backend: {e}") })))
            }
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Ok((ToolCallOutcome::Error, Some(status.as_u16()), json!({ "error": e.to_string() }))),
        };
        let data = match spec.format {
            ToolFormat::Json => serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
            ToolFormat::Soap => {
                xml::leaves(&text).unwrap_or_else(|e| json!({ "error": format!("malformed XML: {e}") }))
            }
        };
        let soap_fault = spec.format == ToolFormat::Soap && data.get("faultcode").is_some();
        let outcome = if status.is_success() && !soap_fault { ToolCallOutcome::Ok } else { ToolCallOutcome::Error };
        Ok((outcome, Some(status.as_u16()), data))
    }
}

/// The backend URL with the path's `{param}` segments filled in, each percent-encoded as
/// one segment so an argument can never add a path or a query.
fn fill_path(base: &reqwest::Url, path: &str, args: &Value) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let value = match &args[name] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    segments.push(&value);
                }
                None => {
                    segments.push(segment);
                }
            }
        }
    }
    url
}

fn replayed(record: ToolCallRecord) -> ToolCallResult {
    let result = record.result.unwrap_or(Value::Null);
    ToolCallResult {
        tool: record.tool,
        outcome: record.outcome,
        status: result["status"].as_u64().map(|s| s as u16),
        data: result["data"].clone(),
        latency_ms: record.latency_ms,
        replayed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::{fill_path, CallContext};
    use serde_json::json;

    #[test]
    fn a_key_tells_the_turn_it_was_made_in() {
        let ctx = CallContext {
            tenant: "acme".parse().unwrap(),
            conversation: concierge_core::ConversationId::new(),
            turn: 7,
            step: 3,
        };
        assert_eq!(CallContext::turn_of_key(&ctx.idempotency_key("get_order")), Some(7));
        assert_eq!(CallContext::turn_of_key("not a key"), None);
    }

    #[test]
    fn path_arguments_are_encoded_as_single_segments() {
        let base = reqwest::Url::parse("http://127.0.0.1:8090/api/").unwrap();
        let url = fill_path(&base, "/orders/{id}/cancel", &json!({"id": "A-1"}));
        assert_eq!(url.as_str(), "http://127.0.0.1:8090/api/orders/A-1/cancel");
        let url = fill_path(&base, "/orders/{id}", &json!({"id": "../admin?x=1#"}));
        assert_eq!(url.as_str(), "http://127.0.0.1:8090/api/orders/..%2Fadmin%3Fx=1%23");
    }
}
