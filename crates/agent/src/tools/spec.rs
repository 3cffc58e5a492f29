//! The shape of a tool declaration in configuration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A business API the tools call: its base URL and, optionally, the environment variable
/// holding its bearer token (secrets never sit in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub url: String,
    #[serde(default)]
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads and harmless writes: called as soon as the arguments are valid.
    #[default]
    Low,
    /// Refunds, cancellations, charges: wait for a human's approval.
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolFormat {
    /// JSON request body (the arguments, or the `body` template) and JSON response.
    #[default]
    Json,
    /// SOAP 1.1: an XML `body` template, XML response whose leaf elements become the result.
    Soap,
}

/// One declared tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// `snake_case`, unique.
    pub name: String,
    /// What the tool does, for people and for models choosing tools.
    pub description: String,
    /// Name of an entry under `[backends]`.
    pub backend: String,
    pub method: HttpMethod,
    /// Path under the backend's URL; `{param}` segments are filled from the arguments.
    pub path: String,
    /// JSON Schema of the arguments. Required string parameters with a `pattern` can be
    /// found in a customer's message.
    pub parameters: Value,
    #[serde(default)]
    pub format: ToolFormat,
    /// Body template (minijinja; `args` in scope), escaped for XML or JSON as the format
    /// requires. Without it a JSON tool sends the arguments themselves.
    #[serde(default)]
    pub body: Option<String>,
    /// The SOAPAction header of a soap tool.
    #[serde(default)]
    pub soap_action: Option<String>,
    #[serde(default)]
    pub risk: Risk,
    /// For a high-risk tool: the condition (a minijinja expression over `args`) under which
    /// a call waits for approval, e.g. `args.amount_cents > 10000`. Without it, every call
    /// waits.
    #[serde(default)]
    pub approve_when: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What the customer sees while the tool runs, e.g. "Checking your order…".
    #[serde(default)]
    pub display: Option<String>,
    /// Template of the answer given to the customer from the result (`args`, `result`, `ok`).
    #[serde(default)]
    pub answer: Option<String>,
    /// May be called as soon as its arguments appear in a message (low risk only).
    #[serde(default)]
    pub lookup: bool,
}

fn default_timeout_ms() -> u64 {
    5_000
}

impl ToolSpec {
    /// The `{param}` segments of the path.
    pub fn path_parameters(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }

    /// The templates to compile, by suffix.
    pub(crate) fn templates(&self) -> Vec<(&'static str, &str)> {
        let body_suffix = match self.format {
            ToolFormat::Json => "body.json",
            ToolFormat::Soap => "body.xml",
        };
        let mut out = Vec::new();
        if let Some(body) = &self.body {
            out.push((body_suffix, body.as_str()));
        }
        if let Some(answer) = &self.answer {
            out.push(("answer", answer.as_str()));
        }
        out
    }
}
