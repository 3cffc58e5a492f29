//! Declared tools: what a company's configuration says about its APIs, compiled once at
//! start-up so that a mistake is found before the first customer arrives.

mod call;
mod spec;
mod xml;

pub use call::{CallContext, ToolCallResult, ToolError};
pub use spec::{BackendSpec, HttpMethod, Risk, ToolFormat, ToolSpec};

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment};
use regex::Regex;
use secrecy::SecretString;
use serde_json::{Map, Value};

/// A tool declaration that cannot be used. Every variant names the tool and the key.
#[derive(Debug, thiserror::Error)]
pub enum ToolConfigError {
    #[error("tools.{tool}: {key}: {problem}")]
    Invalid { tool: String, key: &'static str, problem: String },
    #[error("tools: the name `{0}` is declared twice")]
    Duplicate(String),
}

/// Every declared tool, compiled: schemas, patterns and templates are parsed once.
pub struct ToolRegistry {
    tools: Vec<CompiledTool>,
    templates: Environment<'static>,
    client: reqwest::Client,
}

pub(crate) struct CompiledTool {
    pub(crate) spec: ToolSpec,
    pub(crate) base_url: reqwest::Url,
    pub(crate) token: Option<SecretString>,
    validator: jsonschema::Validator,
    /// Required string parameters and the pattern that finds each in free text.
    finders: Vec<(String, Regex)>,
}

impl ToolRegistry {
    /// Compiles `specs` against `backends`. `env` looks up the secrets named by `token_env`
    /// (the process environment in production).
    pub fn new(
        specs: &[ToolSpec],
        backends: &BTreeMap<String, BackendSpec>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ToolConfigError> {
        let mut templates = Environment::new();
        templates.set_auto_escape_callback(|name| {
            if name.ends_with(".xml") {
                AutoEscape::Html
            } else if name.ends_with(".json") {
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        let mut tools: Vec<CompiledTool> = Vec::with_capacity(specs.len());
        for spec in specs {
            if tools.iter().any(|t| t.spec.name == spec.name) {
                return Err(ToolConfigError::Duplicate(spec.name.clone()));
            }
            let tool = compile(spec, backends, &env)?;
            for (suffix, source) in spec.templates() {
                let name = format!("{}.{suffix}", spec.name);
                templates.add_template_owned(name, source.to_owned()).map_err(|e| ToolConfigError::Invalid {
                    tool: spec.name.clone(),
                    key: if suffix == "answer" { "answer" } else { "body" },
                    problem: e.to_string(),
                })?;
            }
            tools.push(tool);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ToolConfigError::Invalid { tool: "*".into(), key: "client", problem: e.to_string() })?;
        Ok(Self { tools, templates, client })
    }

    /// The declarations, in configuration order.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|t| &t.spec)
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&CompiledTool> {
        self.tools.iter().find(|t| t.spec.name == name)
    }

    /// The first `lookup` tool (low risk by construction) whose required parameters all
    /// appear in `text`, with the arguments found. Schema-driven extraction: each required
    /// parameter's `pattern` is searched for in the text.
    pub fn find_lookup(&self, text: &str) -> Option<(&ToolSpec, Value)> {
        self.tools.iter().filter(|t| t.spec.lookup && !t.finders.is_empty()).find_map(|tool| {
            let mut args = Map::new();
            for (name, finder) in &tool.finders {
                let found = finder.find(text)?;
                args.insert(name.clone(), Value::String(found.as_str().to_owned()));
            }
            let args = Value::Object(args);
            tool.validator.is_valid(&args).then_some((&tool.spec, args))
        })
    }

    /// The schema errors of `args` for `tool`, empty when they are valid.
    pub(crate) fn argument_errors(tool: &CompiledTool, args: &Value) -> Vec<String> {
        tool.validator.iter_errors(args).map(|e| format!("{} at `{}`", e, e.instance_path())).collect()
    }

    /// The customer-facing text for a result, from the tool's `answer` template.
    pub fn render_answer(&self, name: &str, args: &Value, result: &ToolCallResult) -> Option<String> {
        let template = self.templates.get_template(&format!("{name}.answer")).ok()?;
        template
            .render(minijinja::context! { args => args, result => &result.data, ok => result.is_ok() })
            .map_err(|e| tracing::warn!(tool = name, error = %e, "answer template failed"))
            .ok()
    }

    pub(crate) fn render_body(&self, name: &str, suffix: &str, args: &Value) -> Result<Option<String>, ToolError> {
        match self.templates.get_template(&format!("{name}.{suffix}")) {
            Ok(template) => template
                .render(minijinja::context! { args => args })
                .map(Some)
                .map_err(|e| ToolError::Template(e.to_string())),
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

fn compile(
    spec: &ToolSpec,
    backends: &BTreeMap<String, BackendSpec>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<CompiledTool, ToolConfigError> {
    let invalid = |key, problem: String| ToolConfigError::Invalid { tool: spec.name.clone(), key, problem };
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid("name", "expected 1 to 64 characters of a-z, 0-9 and _".into()));
    }
    if spec.lookup && spec.risk != Risk::Low {
        return Err(invalid("lookup", "only low-risk tools may be called without being asked".into()));
    }
    if spec.lookup && spec.answer.is_none() {
        return Err(invalid("answer", "a lookup tool needs an answer template".into()));
    }
    let backend = backends
        .get(&spec.backend)
        .ok_or_else(|| invalid("backend", format!("no backend `{}` is declared under [backends]", spec.backend)))?;
    let base_url = reqwest::Url::parse(&backend.url)
        .map_err(|e| invalid("backend", format!("backend `{}` has an invalid url: {e}", spec.backend)))?;
    let token = match &backend.token_env {
        Some(var) => Some(SecretString::from(env(var).ok_or_else(|| {
            invalid("backend", format!("backend `{}` needs the environment variable {var}", spec.backend))
        })?)),
        None => None,
    };
    let validator = jsonschema::validator_for(&spec.parameters)
        .map_err(|e| invalid("parameters", format!("not a valid JSON Schema: {e}")))?;
    let properties = spec.parameters.get("properties").and_then(Value::as_object);
    for placeholder in spec.path_parameters() {
        if !properties.is_some_and(|p| p.contains_key(placeholder)) {
            return Err(invalid("path", format!("`{{{placeholder}}}` is not a declared parameter")));
        }
    }
    if !spec.path.starts_with('/') {
        return Err(invalid("path", "must start with /".into()));
    }
    if spec.format == ToolFormat::Soap && spec.body.is_none() {
        return Err(invalid("body", "a soap tool needs a body template".into()));
    }
    let mut finders = Vec::new();
    let required = spec.parameters.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
    for name in required.iter().filter_map(Value::as_str) {
        let pattern = properties.and_then(|p| p.get(name)).and_then(|p| p.get("pattern")).and_then(Value::as_str);
        match pattern {
            Some(pattern) => {
                // The schema anchors the whole value; in free text the same shape is searched
                // for between word boundaries instead.
                let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
                let finder = Regex::new(&format!(r"\b(?:{unanchored})\b"))
                    .map_err(|e| invalid("parameters", format!("pattern of `{name}`: {e}")))?;
                finders.push((name.to_owned(), finder));
            }
            None if spec.lookup => {
                return Err(invalid("parameters", format!("lookup tool parameter `{name}` needs a pattern")));
            }
            None => {}
        }
    }
    Ok(CompiledTool { spec: spec.clone(), base_url, token, validator, finders })
}
