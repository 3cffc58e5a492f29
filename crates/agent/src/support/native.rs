//! Native function calling, for a model strong enough to be trusted with the choice: the
//! specialist's model picks which of the specialist's tools to call and with what, reads
//! their results and phrases the answer.
//!
//! The system still executes every call, and holds the model to the extraction path's
//! rules: only the specialist's own tools are offered; an argument that names something
//! (a value with a declared pattern, a number) must come from what the customer wrote or a
//! tool returned this turn, else it is asked for like any missing one; the schema check,
//! approvals, the step limit and the audit log are the tools node's, unchanged; and the
//! answer passes the grounding gate against the results: one sentence it rejects and the
//! customer gets the last call's answer template instead. When the model fails, or answers
//! without calling anything, the extraction path decides instead.

use std::collections::{BTreeSet, VecDeque};
use std::sync::LazyLock;

use concierge_core::Role;
use concierge_llm::{ChatMessage, ChatRequest, ToolCall, ToolChoice, ToolDefinition};
use regex::Regex;
use serde_json::{json, Map, Value};

use super::state::{Action, CallOutcome, NativeStep, ReplyPart, TaskKind, TurnState};
use super::{AgentModel, AgentModelCall, Deps, Specialist};
use crate::grounding::{Evidence, GroundingGate};

/// How the model is told to work, after the specialist's own prompt.
const RULES: &str = "You can call the tools listed. Call one whenever the answer depends on the company's records, \
and never guess an order, amount, date or status. Use only values the customer gave or a tool returned. If a tool \
needs a detail the customer has not given, ask for it. Once the tools have answered, reply in one to three short \
sentences that say only what they returned.";

const MAX_ANSWER_TOKENS: u32 = 300;

/// The native step for the current task, when the native path handles it: the next call
/// to make, a question for what is missing, or the answer to phrase. `None` leaves the
/// task to the extraction path (and a call just made to its answer template).
pub(crate) async fn step(deps: &Deps, model: &dyn AgentModel, state: &mut TurnState) -> Option<Action> {
    let specialist = native_specialist(deps, state)?;
    match &state.action {
        Action::Called { outcome, .. } => {
            if !matches!(outcome, CallOutcome::Done { .. } | CallOutcome::Refused { .. }) {
                return None;
            }
            // A call the extraction path made has no place in the model's exchange.
            let call = state.native_queue.pop_front()?;
            let outcome = outcome.clone();
            state.native.push(NativeStep { call, outcome });
            if !state.native_queue.is_empty() {
                if state.tool_steps < deps.config.max_tool_steps {
                    return Some(next_call(deps, state));
                }
                state.native_queue.clear();
            }
        }
        Action::Undecided => {}
        _ => return None,
    }
    let request = request(deps, specialist, state);
    let (intent, confidence) = state.intent().map_or((None, None), |(i, c, _)| (Some(i), Some(c)));
    let call = AgentModelCall { conversation: state.conversation, request: &request, intent, confidence };
    let answer = match model.next(call).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(conversation = %state.conversation, %error, "tool model failed; extraction decides");
            return None;
        }
    };
    state.native_model.push(answer.metadata);
    let offered = &specialist.spec.tools;
    let calls: VecDeque<ToolCall> =
        answer.response.tool_calls.into_iter().filter(|call| offered.contains(&call.name)).collect();
    if !calls.is_empty() && state.tool_steps < deps.config.max_tool_steps {
        state.native_queue = calls;
        return Some(next_call(deps, state));
    }
    let text = answer.response.text.trim();
    if state.native.is_empty() || text.is_empty() {
        return None;
    }
    Some(Action::Phrase { text: text.to_owned() })
}

/// The current task's specialist, when it has tools for the model to choose from and the
/// intent has no fixed reply.
fn native_specialist<'a>(deps: &'a Deps, state: &TurnState) -> Option<&'a Specialist> {
    let Some(TaskKind::Intent { intent, specialist, .. }) = state.task.as_ref().map(|t| &t.kind) else {
        return None;
    };
    let specialist = deps.specialists.get(specialist)?;
    let native = !specialist.spec.tools.is_empty() && !specialist.spec.replies.contains_key(intent);
    native.then_some(specialist)
}

/// The action for the call at the front of the queue: the call, or a question for what it
/// lacks. Its arguments are kept as they will be sent.
fn next_call(deps: &Deps, state: &mut TurnState) -> Action {
    let Some(call) = state.native_queue.front() else { return Action::Undecided };
    let tool = call.name.clone();
    let mut arguments = match &call.arguments {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    // Set by the tools node from the decision, never by a model.
    arguments.remove("approved_by");
    let arguments = Value::Object(arguments);
    let schema = deps.tools.spec(&tool).map(|s| s.parameters.clone()).unwrap_or_default();
    let mut missing: Vec<String> =
        super::nodes::required(&schema).into_iter().filter(|r| arguments.get(r).is_none_or(Value::is_null)).collect();
    missing.extend(ungrounded(&schema, &arguments, state));
    if !missing.is_empty() {
        tracing::info!(conversation = %state.conversation, %tool, ?missing, "the model's call lacks details; asking");
        state.native_queue.clear();
        return Action::Ask { tool, missing };
    }
    if let Some(front) = state.native_queue.front_mut() {
        front.arguments = arguments.clone();
    }
    let approval = deps.tools.needs_approval(&tool, &arguments);
    Action::Call { tool, arguments, approval }
}

/// The arguments that name something (a string with a declared pattern, an integer) found
/// neither in what the customer wrote nor in what a tool returned this task.
fn ungrounded(schema: &Value, arguments: &Value, state: &TurnState) -> Vec<String> {
    let Some(arguments) = arguments.as_object() else { return Vec::new() };
    let mut said: Vec<&str> = vec![state.message.as_str()];
    said.extend(state.memory.window.iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()));
    said.extend(state.memory.facts.values().map(String::as_str));
    said.extend(state.customer.as_deref());
    let said = said.join("\n").to_lowercase();
    let mut known_numbers = numbers_in(&said);
    let mut returned = String::new();
    for step in &state.native {
        if let CallOutcome::Done { data, .. } = &step.outcome {
            flatten(data, "", &mut returned);
        }
    }
    let returned = returned.to_lowercase();
    known_numbers.extend(numbers_in(&returned));
    arguments
        .iter()
        .filter(|(name, value)| {
            let property = &schema["properties"][name.as_str()];
            match value {
                Value::String(text) if property["pattern"].is_string() => {
                    let text = text.to_lowercase();
                    !said.contains(&text) && !returned.contains(&text)
                }
                Value::Number(number) => number.as_i64().is_some_and(|n| !known_numbers.contains(&n)),
                _ => false,
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every number in `text`, whole and, for amounts of money, in cents too (`$150` → 150 and
/// 15000; `12.99` → 1299).
fn numbers_in(text: &str) -> BTreeSet<i64> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{1,12}(?:[.,]\d{1,2})?").expect("number pattern"));
    let mut numbers = BTreeSet::new();
    for found in NUMBER.find_iter(text) {
        let raw = found.as_str().replace(',', ".");
        let (whole, fraction) = raw.split_once('.').unwrap_or((&raw, ""));
        let Ok(whole) = whole.parse::<i64>() else { continue };
        if fraction.is_empty() {
            numbers.insert(whole);
            numbers.insert(whole.saturating_mul(100));
        } else if let Ok(cents) = format!("{fraction:0<2}").parse::<i64>() {
            numbers.insert(whole.saturating_mul(100).saturating_add(cents));
        }
    }
    numbers
}

/// A tool result as lines of `key path: value`, the words a sentence about it would use
/// (`tracking_number` → `tracking number`).
fn flatten(value: &Value, path: &str, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = key.replace('_', " ");
                let path = if path.is_empty() { key } else { format!("{path} {key}") };
                flatten(value, &path, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| flatten(item, path, out)),
        Value::String(text) => out.push_str(&format!("{path}: {text}\n")),
        Value::Null => {}
        other => out.push_str(&format!("{path}: {other}\n")),
    }
}

/// What the model is shown: the specialist's prompt and the rules, what the conversation
/// knows, the request, and the calls made for it so far with their results verbatim.
fn request(deps: &Deps, specialist: &Specialist, state: &TurnState) -> ChatRequest {
    let mut system = format!("{}\n\n{RULES} {}", specialist.prompt.text, concierge_guard::FENCE_RULE);
    if let Some(customer) = &state.customer {
        system.push_str(&format!("\n\nThe customer's reference: {customer}."));
    }
    if !state.memory.facts.is_empty() {
        let facts: Vec<String> = state.memory.facts.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        system.push_str(&format!("\nDetails the customer gave: {}.", facts.join(", ")));
    }
    if let Some(summary) = &state.memory.summary {
        system.push_str(&format!("\n\nEarlier in this conversation:\n{summary}"));
    }
    let mut messages = vec![ChatMessage::system(system)];
    for message in &state.memory.window {
        match message.role {
            Role::User => messages.push(ChatMessage::user(message.content.clone())),
            Role::Assistant | Role::Operator => messages.push(ChatMessage::assistant(message.content.clone())),
            _ => {}
        }
    }
    let question = state.task.as_ref().map_or(state.message.as_str(), |t| t.text.as_str());
    messages.push(ChatMessage::user(question.to_owned()));
    for step in &state.native {
        let mut asked = ChatMessage::assistant(String::new());
        asked.tool_calls = vec![step.call.clone()];
        messages.push(asked);
        // Verbatim: a tool message is labelled as a result by its role, which the model's
        // own format sets apart; what reads as instructions is withheld by `result_text`.
        messages.push(ChatMessage::tool_result(step.call.id.clone(), result_text(&step.outcome)));
    }
    let tools = specialist.spec.tools.iter().filter_map(|name| definition(deps, name)).collect();
    let at_limit = state.tool_steps >= deps.config.max_tool_steps;
    ChatRequest {
        messages,
        tools,
        tool_choice: if at_limit { ToolChoice::None } else { ToolChoice::Auto },
        temperature: Some(0.0),
        max_tokens: Some(MAX_ANSWER_TOKENS),
        seed: Some(0),
        ..ChatRequest::default()
    }
}

/// A declared tool as a model is offered it: without the parameter only an approver sets.
fn definition(deps: &Deps, name: &str) -> Option<ToolDefinition> {
    let spec = deps.tools.spec(name)?;
    let mut parameters = spec.parameters.clone();
    if let Some(properties) = parameters["properties"].as_object_mut() {
        properties.remove("approved_by");
    }
    if let Some(required) = parameters["required"].as_array_mut() {
        required.retain(|r| r != "approved_by");
    }
    Some(ToolDefinition { name: spec.name.clone(), description: spec.description.clone(), parameters })
}

/// A call's outcome as the model reads it: the backend's answer verbatim, or why nothing
/// was sent.
/// A call's outcome as the model reads it; a result that reads as instructions (a backend
/// echoing what someone typed into it) is withheld.
fn result_text(outcome: &CallOutcome) -> String {
    let value = match outcome {
        CallOutcome::Done { ok: true, data, .. } => data.clone(),
        CallOutcome::Done { ok: false, data, .. } => json!({ "error": "the call failed", "response": data }),
        CallOutcome::Refused { problems } => json!({ "error": "invalid_arguments", "problems": problems }),
        CallOutcome::Denied { reason, .. } => json!({ "error": "denied_by_approver", "reason": reason }),
        CallOutcome::Expired => json!({ "error": "approval_expired" }),
    };
    let text = value.to_string();
    if concierge_guard::detector().assess(&text).is_attack() {
        let injections = concierge_core::metric::INJECTIONS;
        metrics::counter!(injections, "channel" => "tool_result", "action" => "withheld").increment(1);
        return json!({ "error": "withheld: the result holds text that reads as instructions" }).to_string();
    }
    text
}

/// The model's answer when the results support every sentence of it; else `templated`,
/// the last call's answer template: the same facts, in the company's words.
pub(crate) fn phrased(deps: &Deps, state: &TurnState, text: &str, templated: ReplyPart) -> ReplyPart {
    let mut evidence_texts = Vec::new();
    for step in &state.native {
        if let CallOutcome::Done { ok, data, .. } = &step.outcome {
            let mut lines =
                deps.tools.render_result(&step.call.name, &step.call.arguments, data, *ok).unwrap_or_default();
            lines.push('\n');
            flatten(data, "", &mut lines);
            evidence_texts.push(lines);
        }
    }
    evidence_texts.push(state.message.clone());
    let evidence: Vec<Evidence<'_>> =
        evidence_texts.iter().enumerate().map(|(i, text)| Evidence { n: i + 1, text }).collect();
    let verdict = GroundingGate::default().check(text, &evidence);
    let supported: Vec<&str> = verdict.supported.iter().map(|s| s.text.as_str()).collect();
    let blocked = held_back(deps, state, text);
    let passed =
        blocked.is_none() && verdict.rejected.is_empty() && verdict.supported.iter().any(|s| !s.cites.is_empty());
    let mut part = templated;
    if let Some(blocked) = &blocked {
        tracing::warn!(conversation = %state.conversation, ?blocked, "the tool model's answer was held back");
        part.metadata["guard"] = json!({ "output_blocked": blocked });
    }
    if passed {
        part.text = supported.join(" ");
        part.metadata["answered_by"] = json!("tool_model");
    } else if !verdict.rejected.is_empty() {
        // Counts and reasons only in the log: the sentences may repeat the customer's words.
        tracing::info!(
            conversation = %state.conversation,
            supported = verdict.supported.len(),
            rejected = verdict.rejected.len(),
            "grounding gate replaced the tool model's answer with the tool's template"
        );
    }
    part.metadata["grounding"] =
        json!({ "passed": passed, "supported": verdict.supported.len(), "rejected": verdict.rejected });
    annotate_model(&mut part, state);
    part
}

/// Why the model's answer `text` must not be sent, if it must not: it repeats its
/// instructions, or names a tool the turn did not call.
fn held_back(deps: &Deps, state: &TurnState, text: &str) -> Option<concierge_guard::Blocked> {
    let prompt = native_specialist(deps, state).map(|s| s.prompt.text.as_str()).unwrap_or_default();
    let tools: Vec<&str> = deps.tools.specs().map(|spec| spec.name.as_str()).collect();
    let used: Vec<&str> = state.native.iter().map(|step| step.call.name.as_str()).collect();
    let rules = concierge_guard::OutputRules { instructions: &[prompt, RULES], tools: &tools, used: &used };
    concierge_guard::check_answer(text, &rules)
}

/// Records on `part` every call the model made for the task and what its model calls cost.
pub(crate) fn annotate_model(part: &mut ReplyPart, state: &TurnState) {
    if state.native_model.is_empty() {
        return;
    }
    let calls: Vec<Value> = state
        .native
        .iter()
        .map(|step| json!({ "name": step.call.name, "arguments": step.call.arguments, "outcome": outcome_name(&step.outcome) }))
        .collect();
    let sum = |key: &str| -> u64 { state.native_model.iter().filter_map(|m| m["usage"][key].as_u64()).sum() };
    let cost: i64 = state.native_model.iter().filter_map(|m| m["cost_micros"].as_i64()).sum();
    let model = state.native_model.iter().rev().find_map(|m| m["model"].as_str()).unwrap_or_default();
    part.metadata["function_calling"] = json!({
        "mode": "native",
        "model": model,
        "model_calls": state.native_model.len(),
        "tool_calls": calls,
        "usage": { "prompt_tokens": sum("prompt_tokens"), "completion_tokens": sum("completion_tokens") },
        "cost_micros": cost,
    });
}

fn outcome_name(outcome: &CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Done { ok: true, .. } => "ok",
        CallOutcome::Done { ok: false, .. } => "error",
        CallOutcome::Denied { .. } => "denied",
        CallOutcome::Expired => "expired",
        CallOutcome::Refused { .. } => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_arguments_must_come_from_the_customer_or_a_result() {
        let schema = json!({ "properties": {
            "order_id": { "type": "string", "pattern": "^A-[0-9]{5}$" },
            "amount_cents": { "type": "integer" },
            "reason": { "type": "string" },
        } });
        let mut state = TurnState::new(
            "acme".parse().unwrap(),
            concierge_core::ConversationId::new(),
            1,
            "refund $150 on a-10007".into(),
        );
        let said = json!({ "order_id": "A-10007", "amount_cents": 15000, "reason": "free text is not checked" });
        assert!(ungrounded(&schema, &said, &state).is_empty());
        let invented = json!({ "order_id": "A-10008", "amount_cents": 29998, "reason": "x" });
        let mut missing = ungrounded(&schema, &invented, &state);
        missing.sort();
        assert_eq!(missing, ["amount_cents", "order_id"]);
        let data = json!({ "id": "A-10008", "total_cents": 29998 });
        let call = ToolCall { id: "c1".into(), name: "get_order".into(), arguments: json!({}) };
        state
            .native
            .push(NativeStep { call, outcome: CallOutcome::Done { ok: true, data, latency_ms: 1, approved_by: None } });
        assert!(ungrounded(&schema, &invented, &state).is_empty(), "a lookup returned both");
    }

    #[test]
    fn numbers_are_known_whole_and_in_cents() {
        let numbers = numbers_in("refund $150 on a-10007, or 12.99 at least");
        for n in [150, 15000, 10007, 1299] {
            assert!(numbers.contains(&n), "{n} in {numbers:?}");
        }
        assert!(!numbers.contains(&20000));
    }

    #[test]
    fn results_flatten_into_the_words_a_sentence_uses() {
        let mut out = String::new();
        flatten(
            &json!({ "id": "A-1", "shipment": { "tracking_number": "48" }, "items": [{ "sku": "K" }], "x": null }),
            "",
            &mut out,
        );
        assert_eq!(out, "id: A-1\nitems sku: K\nshipment tracking number: 48\n");
    }
}
