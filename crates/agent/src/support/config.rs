//! The `[agent]` section: specialists, memory, escalation and limits, checked at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the support agent works for one company. Everything has a default, so a
/// configuration without `[agent]` gets a working agent that answers from the knowledge
/// base and calls lookup tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's name: the model clients of the OpenAI-compatible API ask for.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub specialists: Vec<SpecialistSpec>,
    #[serde(default)]
    pub memory: MemoryConfig,
    #[serde(default)]
    pub escalation: EscalationConfig,
    /// Tool calls one turn may make.
    #[serde(default = "default_max_tool_steps")]
    pub max_tool_steps: u32,
    /// Times one request may go back to the router.
    #[serde(default = "default_max_hops")]
    pub max_hops: u32,
    /// Graph steps one turn may take before it is handed to a person.
    #[serde(default = "default_step_limit")]
    pub step_limit: u32,
    /// How long one step may take.
    #[serde(default = "default_node_timeout_secs")]
    pub node_timeout_secs: u64,
    /// How long an approval may wait before it lapses.
    #[serde(default = "default_approval_ttl_secs")]
    pub approval_ttl_secs: u64,
    /// Who chooses tools and their arguments.
    #[serde(default)]
    pub function_calling: FunctionCalling,
    /// What is done with a customer message that reads as prompt injection.
    #[serde(default)]
    pub guard: GuardConfig,
}

/// `[agent.guard]`: the check of each customer message for prompt injection
/// (`concierge_guard::injection`) before it is routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub on_injection: OnInjection,
    /// What the customer is told when their message is refused.
    pub reply: String,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            on_injection: OnInjection::Refuse,
            reply: "I can't take instructions about how I work, but I'm glad to help with your orders, your \
                    account or our products. What can I do for you?"
                .into(),
        }
    }
}

/// What becomes of a message that reads as prompt injection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInjection {
    /// Not routed, not shown to any model: the customer gets `reply`.
    #[default]
    Refuse,
    /// Handled as any message, with the verdict recorded on the reply.
    Flag,
    /// Not checked.
    Off,
}

/// Who chooses a specialist's tool calls and their arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionCalling {
    /// Native when the model that answers is a remote provider (OpenAI-compatible or
    /// Anthropic), extraction for the embedded model.
    #[default]
    Auto,
    /// The model, through its provider's function calling, whatever the provider.
    Native,
    /// Each parameter's declared pattern, from the customer's words; no model involved.
    Extraction,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: default_name(),
            specialists: Vec::new(),
            memory: MemoryConfig::default(),
            escalation: EscalationConfig::default(),
            max_tool_steps: default_max_tool_steps(),
            max_hops: default_max_hops(),
            step_limit: default_step_limit(),
            node_timeout_secs: default_node_timeout_secs(),
            approval_ttl_secs: default_approval_ttl_secs(),
            function_calling: FunctionCalling::default(),
            guard: GuardConfig::default(),
        }
    }
}

fn default_name() -> String {
    "concierge".into()
}
fn default_max_tool_steps() -> u32 {
    3
}
fn default_max_hops() -> u32 {
    2
}
fn default_step_limit() -> u32 {
    25
}
fn default_node_timeout_secs() -> u64 {
    60
}
fn default_approval_ttl_secs() -> u64 {
    24 * 3600
}

/// A specialist: its prompt, the tools it may use, and which intent calls which tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialistSpec {
    pub name: String,
    /// Its system prompt: a text file whose first line may be `version: …`.
    pub prompt: PathBuf,
    /// The only tools it may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Intent → the tool that serves it. Intents not listed are answered from the
    /// knowledge base.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionSpec>,
    /// Intent → a fixed reply (greetings, thanks, repeating a detail): a minijinja template
    /// over `facts` (the details the customer gave, by parameter) and `customer`; no search,
    /// no model, no tool.
    #[serde(default)]
    pub replies: BTreeMap<String, String>,
}

/// The tool an intent calls, and arguments not found in the conversation: minijinja
/// templates over `message`, `facts`, `customer` and `lookup` (e.g. `reason = "{{ message
/// }}"`). A template that renders empty leaves the argument to the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub tool: String,
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// A low-risk tool called first when a required argument is still missing, its result
    /// `lookup` in the templates: "refund it in full" takes the amount from the order.
    #[serde(default)]
    pub lookup: Option<LookupSpec>,
}

/// A lookup made before an action's call, to fill its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// One of the specialist's tools, low risk, its arguments taken from the conversation.
    pub tool: String,
    /// A regular expression the message must match for the lookup to be made (without
    /// one, it is made whenever an argument is missing).
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Earlier messages kept verbatim.
    #[serde(default = "default_window_messages")]
    pub window_messages: usize,
    /// Cap on the tokens of those messages (oldest dropped first).
    #[serde(default = "default_window_tokens")]
    pub window_tokens: usize,
    /// Lines of summary kept of what came before the window.
    #[serde(default = "default_summary_lines")]
    pub summary_lines: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            window_messages: default_window_messages(),
            window_tokens: default_window_tokens(),
            summary_lines: default_summary_lines(),
        }
    }
}

fn default_window_messages() -> usize {
    6
}
fn default_window_tokens() -> usize {
    1200
}
fn default_summary_lines() -> usize {
    8
}

/// When a conversation goes to a person, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Intents that mean "a person, please".
    #[serde(default = "default_escalation_intents")]
    pub intents: Vec<String>,
    /// Words and phrases (case-insensitive) of topics only a person handles.
    #[serde(default)]
    pub policy_topics: Vec<String>,
    /// Sentiment (VADER compound, -1 to 1) at or below which a message escalates.
    #[serde(default = "default_negative_sentiment")]
    pub negative_sentiment: f64,
    /// Phrases (case-insensitive, whole words) of a customer at the end of their patience,
    /// which a sentiment score can miss ("ridiculous", "third time"): each escalates.
    #[serde(default)]
    pub complaint_phrases: Vec<String>,
    /// Replies that could not help, in one conversation, before the next one escalates.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Clarifying questions in a row before the next one escalates instead.
    #[serde(default = "default_max_clarifications")]
    pub max_clarifications: u32,
    /// The tool that opens a ticket in the company's helpdesk (`subject`, `description`,
    /// and `customer_id`, `order_id`, `priority` when it declares them). Without one the
    /// ticket is kept in Concierge only.
    #[serde(default)]
    pub ticket_tool: Option<String>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            intents: default_escalation_intents(),
            policy_topics: Vec::new(),
            negative_sentiment: default_negative_sentiment(),
            complaint_phrases: Vec::new(),
            max_failures: default_max_failures(),
            max_clarifications: default_max_clarifications(),
            ticket_tool: None,
        }
    }
}

fn default_escalation_intents() -> Vec<String> {
    vec!["talk_to_human".into()]
}
fn default_negative_sentiment() -> f64 {
    -0.75
}
fn default_max_failures() -> u32 {
    2
}
fn default_max_clarifications() -> u32 {
    2
}

/// A specialist's system prompt and its version, recorded on every reply it shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub version: String,
    pub text: String,
}

impl Prompt {
    /// Reads a prompt file: an optional first line `version: …`, then the prompt. Without
    /// a version line the version is the first 12 hex digits of the text's FNV-1a hash,
    /// so an edited prompt is never recorded under its old version.
    pub fn read(path: &Path) -> Result<Prompt, String> {
        let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (version, text) = match raw.split_once('\n') {
            Some((first, rest)) if first.trim_start().starts_with("version:") => {
                let version = first.trim_start().trim_start_matches("version:").trim().to_owned();
                (version, rest.trim().to_owned())
            }
            _ => (String::new(), raw.trim().to_owned()),
        };
        if text.is_empty() {
            return Err(format!("{}: the prompt is empty", path.display()));
        }
        let version = if version.is_empty() { format!("{:012x}", fnv1a(&text) >> 16) } else { version };
        Ok(Prompt { version, text })
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
