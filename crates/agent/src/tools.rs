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
    finders: Vec<Finder>,
    /// Every parameter's declared `pattern`, compiled as the schema reads it (a search).
    patterns: Vec<(String, Regex)>,
}

/// How one parameter is found in a customer's text: its pattern searched for between word
/// boundaries, ignoring case, and the value kept in the case the schema accepts.
pub(crate) struct Finder {
    parameter: String,
    search: Regex,
    exact: Regex,
}

impl Finder {
    /// Every value of the parameter in `text`, in order.
    fn find_all<'a>(&'a self, text: &'a str) -> impl Iterator<Item = String> + 'a {
        self.search.find_iter(text).filter_map(|m| {
            let found = m.as_str();
            [found.to_owned(), found.to_uppercase(), found.to_lowercase()].into_iter().find(|v| self.exact.is_match(v))
        })
    }
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
            if let Some(expression) = &spec.approve_when {
                templates
                    .add_template_owned(format!("{}.approve_when", spec.name), format!("{{{{ {expression} }}}}"))
                    .map_err(|e| ToolConfigError::Invalid {
                        tool: spec.name.clone(),
                        key: "approve_when",
                        problem: e.to_string(),
                    })?;
            }
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

    /// The declaration of `name`.
    pub fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.tool(name).map(|t| &t.spec)
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&CompiledTool> {
        self.tools.iter().find(|t| t.spec.name == name)
    }

    /// The first `lookup` tool (low risk by construction) whose required parameters all
    /// appear in `text`, with the arguments found. Schema-driven extraction: each required
    /// parameter's `pattern` is searched for in the text.
    pub fn find_lookup(&self, text: &str) -> Option<(&ToolSpec, Value)> {
        self.find_lookup_among(text, |_| true)
    }

    /// [`find_lookup`](Self::find_lookup) among the tools `allowed` accepts.
    pub fn find_lookup_among(&self, text: &str, allowed: impl Fn(&str) -> bool) -> Option<(&ToolSpec, Value)> {
        self.tools.iter().filter(|t| t.spec.lookup && !t.finders.is_empty() && allowed(&t.spec.name)).find_map(|tool| {
            let mut args = Map::new();
            for finder in &tool.finders {
                let found = finder.find_all(text).next()?;
                args.insert(finder.parameter.clone(), Value::String(found));
            }
            let args = Value::Object(args);
            tool.validator.is_valid(&args).then_some((&tool.spec, args))
        })
    }

    /// Every value a customer's text gives for a parameter some tool can find (a pattern
    /// declared on a required string parameter), as (parameter, value) in text order.
    pub fn facts_in(&self, text: &str) -> Vec<(String, String)> {
        let mut seen: Vec<&str> = Vec::new();
        let mut facts: Vec<(usize, String, String)> = Vec::new();
        for finder in self.tools.iter().flat_map(|t| &t.finders) {
            if seen.contains(&finder.parameter.as_str()) {
                continue;
            }
            seen.push(&finder.parameter);
            for m in finder.search.find_iter(text) {
                if let Some(value) = finder.find_all(m.as_str()).next() {
                    facts.push((m.start(), finder.parameter.clone(), value));
                }
            }
        }
        facts.sort_by_key(|(at, ..)| *at);
        facts.into_iter().map(|(_, parameter, value)| (parameter, value)).collect()
    }

    /// Whether calling `name` with `args` must wait for a person's approval: every call of
    /// a high-risk tool, unless it declares `approve_when`, then only when that holds.
    pub fn needs_approval(&self, name: &str, args: &Value) -> bool {
        let Some(tool) = self.tool(name) else { return true };
        if tool.spec.risk != Risk::High {
            return false;
        }
        if tool.spec.approve_when.is_none() {
            return true;
        }
        // A rule that cannot be evaluated asks a person: the safe side.
        match self.templates.get_template(&format!("{name}.approve_when")) {
            Ok(template) => template
                .render(minijinja::context! { args => args })
                .map_or(true, |v| !v.trim().eq_ignore_ascii_case("false")),
            Err(_) => true,
        }
    }

    /// Whether `value` matches the `pattern` declared for `parameter` of `name`; false for a
    /// parameter without one.
    pub fn accepts(&self, name: &str, parameter: &str, value: &str) -> bool {
        self.tool(name).is_some_and(|tool| tool.patterns.iter().any(|(p, re)| p == parameter && re.is_match(value)))
    }

    /// Whether the arguments satisfy the tool's schema.
    pub fn arguments_valid(&self, name: &str, args: &Value) -> bool {
        self.tool(name).is_some_and(|tool| tool.validator.is_valid(args))
    }

    /// The schema errors of `args` for `tool`, empty when they are valid.
    pub(crate) fn argument_errors(tool: &CompiledTool, args: &Value) -> Vec<String> {
        tool.validator.iter_errors(args).map(|e| format!("{} at `{}`", e, e.instance_path())).collect()
    }

    /// The customer-facing text for a result, from the tool's `answer` template.
    pub fn render_answer(&self, name: &str, args: &Value, result: &ToolCallResult) -> Option<String> {
        self.render_result(name, args, &result.data, result.is_ok())
    }

    /// [`render_answer`](Self::render_answer) for a result kept as its data and whether the
    /// call succeeded.
    pub fn render_result(&self, name: &str, args: &Value, data: &Value, ok: bool) -> Option<String> {
        let template = self.templates.get_template(&format!("{name}.answer")).ok()?;
        template
            .render(minijinja::context! { args => args, result => data, ok => ok })
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
    let mut finders: Vec<Finder> = Vec::new();
    let required = spec.parameters.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
    for name in required.iter().filter_map(Value::as_str) {
        let pattern = properties.and_then(|p| p.get(name)).and_then(|p| p.get("pattern")).and_then(Value::as_str);
        match pattern {
            Some(pattern) => {
                // The schema anchors the whole value; in free text the same shape is searched
                // for between word boundaries instead.
                let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
                let bad = |e: regex::Error| invalid("parameters", format!("pattern of `{name}`: {e}"));
                let search = Regex::new(&format!(r"(?i)\b(?:{unanchored})\b")).map_err(bad)?;
                let exact = Regex::new(&format!("^(?:{unanchored})$")).map_err(bad)?;
                finders.push(Finder { parameter: name.to_owned(), search, exact });
            }
            None if spec.lookup => {
                return Err(invalid("parameters", format!("lookup tool parameter `{name}` needs a pattern")));
            }
            None => {}
        }
    }
    if spec.approve_when.is_some() && spec.risk != Risk::High {
        return Err(invalid("approve_when", "only a high-risk tool waits for approval".into()));
    }
    // A pattern the regex engine cannot read matches nothing, as the schema's engine decides
    // validity on its own.
    let patterns = properties
        .into_iter()
        .flatten()
        .filter_map(|(name, p)| Some((name.clone(), Regex::new(p.get("pattern")?.as_str()?).ok()?)))
        .collect();
    Ok(CompiledTool { spec: spec.clone(), base_url, token, validator, finders, patterns })
}
