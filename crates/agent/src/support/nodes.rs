//! The nodes of the support graph and the graph that joins them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use concierge_core::metric;
use concierge_core::{
    Approval, ApprovalId, ApprovalStatus, ConversationStatus, Ticket, TicketId, TicketPriority, TicketStatus,
};
use concierge_graph::{BuildError, Flow, Graph, GraphBuilder, Node, NodeContext, NodeError, END, START};
use regex::Regex;
use serde_json::{json, Map, Value};

use super::escalation::{ASKED_FOR_HUMAN, NEGATIVE_SENTIMENT, POLICY_TOPIC, REPEATED_FAILURE, STEP_LIMIT};
use super::memory::{remember, ANSWERED_BY, ASKED_FOR, CLARIFY, FAILED, FOLLOW_UP};
use super::state::{Action, Awaiting, CallOutcome, Escalation, ReplyPart, Task, TaskKind, TurnState};
use super::{native, routing};
use super::{ActionSpec, AgentEvent, AnswerRequest, Deps, OnInjection, Specialist};
use crate::{CallContext, Routing};

type Ctx = NodeContext<AgentEvent>;

/// Below this confidence a routed follow-up is read again together with the message before
/// it, and the reading that is surer wins.
pub(super) const UNSURE_BELOW: f32 = 0.6;

/// At or above this confidence the router is sure of an intent: another reading of the
/// message does not override it.
const SURE_FROM: f32 = 0.8;

pub(crate) fn graph(deps: &Arc<Deps>) -> Result<Graph<TurnState, AgentEvent>, BuildError> {
    GraphBuilder::new()
        .node("load_context", LoadContext(Arc::clone(deps)))
        .node("guard_in", GuardIn(Arc::clone(deps)))
        .node("classify", Classify(Arc::clone(deps)))
        .node("specialist", SpecialistNode(Arc::clone(deps)))
        .node("tools", Tools(Arc::clone(deps)))
        .node("check_escalation", CheckEscalation(Arc::clone(deps)))
        .node("escalate", Escalate(Arc::clone(deps)))
        .node("respond", Respond(Arc::clone(deps)))
        .edge(START, "load_context")
        .edge("load_context", "guard_in")
        .branch("guard_in", &["classify", "respond"], |s: &TurnState| {
            if refused(s) { "respond" } else { "classify" }.into()
        })
        .edge("classify", "specialist")
        .branch("specialist", &["tools", "classify", "check_escalation"], |s: &TurnState| {
            match s.action {
                Action::Call { .. } => "tools",
                Action::HandBack { .. } => "classify",
                _ => "check_escalation",
            }
            .into()
        })
        .edge("tools", "specialist")
        .branch("check_escalation", &["escalate", "respond"], |s: &TurnState| {
            if s.escalation.is_some() { "escalate" } else { "respond" }.into()
        })
        .edge("escalate", "respond")
        .branch("respond", &["specialist", END], |s: &TurnState| {
            let next = s.action == Action::Undecided && s.escalation.is_none() && s.task.is_some();
            if next { "specialist" } else { END }.into()
        })
        .step_limit(deps.config.step_limit)
        .on_step_limit("escalate")
        .default_timeout(Duration::from_secs(deps.config.node_timeout_secs))
        .build()
}

/// Rebuilds the conversation's memory from the store.
struct LoadContext(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for LoadContext {
    async fn run(&self, state: &mut TurnState, _: &Ctx) -> Result<Flow, NodeError> {
        let messages = self.0.store.messages(&state.tenant, state.conversation).await?;
        state.memory = remember(&messages, state.turn, &self.0.tools, &self.0.config.memory);
        Ok(Flow::Continue)
    }
}

/// Checks the customer's message for prompt injection (`[agent.guard]`): a message that
/// reads as an attack is refused — not routed, never shown to a model — or only flagged.
struct GuardIn(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for GuardIn {
    async fn run(&self, state: &mut TurnState, _: &Ctx) -> Result<Flow, NodeError> {
        let guard = &self.0.config.guard;
        if guard.on_injection == OnInjection::Off {
            return Ok(Flow::Continue);
        }
        let assessment = concierge_guard::detector().assess(&state.message);
        if !assessment.is_attack() {
            return Ok(Flow::Continue);
        }
        let refuse = guard.on_injection == OnInjection::Refuse;
        // The signals only: the message itself is in the transcript.
        tracing::warn!(conversation = %state.conversation, turn = state.turn, score = assessment.score,
            signals = ?assessment.signals, refused = refuse, "prompt injection in a customer message");
        let action = if refuse { "refused" } else { "flagged" };
        metrics::counter!(metric::INJECTIONS, "channel" => "customer", "action" => action).increment(1);
        state.guard = Some(json!({
            "injection": assessment,
            "action": action,
        }));
        if refuse {
            state.action = Action::Reply { text: guard.reply.clone() };
            state.task = None;
            state.tasks.clear();
        }
        Ok(Flow::Continue)
    }
}

/// Whether the guard refused this turn's message.
fn refused(state: &TurnState) -> bool {
    state.guard.as_ref().is_some_and(|guard| guard["action"] == "refused")
}

/// Routes the message into tasks; or re-targets a task a specialist handed back; or
/// continues the request whose missing details this message gives.
struct Classify(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for Classify {
    async fn run(&self, state: &mut TurnState, ctx: &Ctx) -> Result<Flow, NodeError> {
        let deps = &self.0;
        if let (Action::HandBack { intent }, Some(task)) = (&state.action, state.task.as_mut()) {
            let confidence = match &task.kind {
                TaskKind::Intent { confidence, .. } => *confidence,
                _ => 0.0,
            };
            let specialist = deps.intents.get(intent).map(|i| i.specialist.clone()).unwrap_or_default();
            task.kind = TaskKind::Intent { intent: intent.clone(), confidence, specialist };
            state.hops += 1;
            state.action = Action::Undecided;
        } else {
            let mut tasks = self.tasks(state).await;
            state.task = tasks.pop_front();
            state.tasks = tasks;
        }
        let meta = match state.intent() {
            Some((intent, confidence, specialist)) => AgentEvent::Meta {
                intent: Some(intent.to_owned()),
                confidence: Some(confidence),
                specialist: Some(specialist.to_owned()),
            },
            None => AgentEvent::Meta { intent: None, confidence: None, specialist: None },
        };
        ctx.emit(meta).await;
        Ok(Flow::Continue)
    }
}

/// Whether the router is sure the message asks for something other than `intent`.
fn names_another_intent(routing: &Routing, intent: &str) -> bool {
    match routing {
        Routing::Intent { intent: scored, .. } => scored.intent != intent && scored.confidence >= SURE_FROM,
        Routing::Several { intents } => intents.iter().all(|(scored, _)| scored.intent != intent),
        _ => false,
    }
}

impl Classify {
    async fn tasks(&self, state: &mut TurnState) -> std::collections::VecDeque<Task> {
        let deps = &self.0;
        let whole = |kind| std::collections::VecDeque::from([Task { text: state.message.clone(), kind }]);
        let started = std::time::Instant::now();
        let routed = match &deps.router {
            Some(router) => Some(router.route(&state.message).await),
            None => None,
        };
        metrics::histogram!(metric::STAGE_SECONDS, "stage" => "router").record(started.elapsed().as_secs_f64());
        if let Some(awaiting) = &state.memory.awaiting {
            let given = deps.tools.facts_in(&state.message);
            let gives_what_is_needed = given.iter().any(|(parameter, _)| awaiting.missing.contains(parameter));
            let elsewhere = matches!(&routed, Some(Ok(routing)) if names_another_intent(routing, &awaiting.intent));
            if gives_what_is_needed && !elsewhere {
                state.routing = Some(json!({ "decision": "continued", "intent": awaiting.intent }));
                return whole(TaskKind::Intent {
                    intent: awaiting.intent.clone(),
                    confidence: 1.0,
                    specialist: awaiting.specialist.clone(),
                });
            }
        }
        let (Some(router), Some(routed)) = (&deps.router, routed) else { return whole(TaskKind::Unrouted) };
        let mut routing = match routed {
            Ok(routing) => routing,
            Err(error) => {
                tracing::warn!(conversation = %state.conversation, %error, "routing failed; answering unrouted");
                return whole(TaskKind::Unrouted);
            }
        };
        state.routing = serde_json::to_value(&routing).ok();
        // A follow-up ("the link says it's expired") may only make sense after the message
        // before it: read together, they may name the intent the follow-up alone does not.
        let unsure = match &routing {
            Routing::OutOfScope { .. } | Routing::Clarify { .. } => Some(0.0),
            Routing::Intent { intent, .. } if intent.confidence < UNSURE_BELOW => Some(intent.confidence),
            _ => None,
        };
        let before = state.memory.window.iter().rev().find(|m| m.role == concierge_core::Role::User);
        if let (Some(alone), Some(before)) = (unsure, before) {
            let together = format!("{} {}", before.content, state.message);
            if let Ok(Routing::Intent { intent, specialist }) = router.route(&together).await {
                if intent.confidence > alone {
                    let in_context = Routing::Intent { intent, specialist };
                    state.routing =
                        Some(json!({ "decision": "in_context", "alone": state.routing, "together": in_context }));
                    routing = in_context;
                }
            }
        }
        // What the classifier is unsure of (or everything, as configured) a strong model reads.
        if let Some(model) = &deps.route_model {
            let config = router.config();
            if routing::wanted(config.llm, &routing, config.out_of_scope_similarity_below) {
                if let Some((by_model, record)) = routing::route(deps, model.as_ref(), state, &routing).await {
                    state.routing = Some(record);
                    routing = by_model;
                }
            }
        }
        // Pleasantries next to a request add nothing to the reply: "Hi! Where is A-10033?"
        if let Routing::Several { intents } = &mut routing {
            let has_reply = |intent: &str| {
                let specialist = deps.intents.get(intent).map(|i| i.specialist.as_str()).unwrap_or_default();
                deps.specialists.get(specialist).is_some_and(|s| s.spec.replies.contains_key(intent))
            };
            if intents.iter().any(|(scored, _)| !has_reply(&scored.intent)) {
                intents.retain(|(scored, _)| !has_reply(&scored.intent));
            }
        }
        let specialist_of = |intent: &str| deps.intents.get(intent).map(|i| i.specialist.clone()).unwrap_or_default();
        match routing {
            Routing::Intent { intent, specialist } => {
                whole(TaskKind::Intent { intent: intent.intent, confidence: intent.confidence, specialist })
            }
            Routing::Several { intents } => intents
                .into_iter()
                .map(|(scored, part)| Task {
                    text: part,
                    kind: TaskKind::Intent {
                        specialist: specialist_of(&scored.intent),
                        intent: scored.intent,
                        confidence: scored.confidence,
                    },
                })
                .collect(),
            Routing::Clarify { candidates } => {
                whole(TaskKind::Clarify { candidates: candidates.iter().map(|c| c.intent.clone()).collect() })
            }
            Routing::OutOfScope { .. } => whole(TaskKind::OutOfScope),
        }
    }
}

/// Decides what to do about the current task: which tool with which arguments, what to
/// ask, or to answer from the knowledge base. Leaves a made call's result to `respond`.
struct SpecialistNode(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for SpecialistNode {
    async fn run(&self, state: &mut TurnState, _: &Ctx) -> Result<Flow, NodeError> {
        if let Some(model) = &self.0.tool_model {
            if let Some(action) = native::step(&self.0, model.as_ref(), state).await {
                state.action = action;
                return Ok(Flow::Continue);
            }
        }
        // The action's lookup answered: its result fills the arguments of the call itself.
        if let Action::Called { tool, outcome: CallOutcome::Done { ok: true, data, .. }, .. } = &state.action {
            if state.lookup.is_none() && is_lookup(&self.0, state, tool) {
                state.lookup = Some(data.clone());
                state.action = decide(&self.0, state);
                return Ok(Flow::Continue);
            }
        }
        if !matches!(state.action, Action::Called { .. }) {
            state.action = decide(&self.0, state);
        }
        Ok(Flow::Continue)
    }
}

fn decide(deps: &Deps, state: &TurnState) -> Action {
    let Some(task) = &state.task else { return Action::Answer };
    let (intent, specialist) = match &task.kind {
        TaskKind::OutOfScope => return Action::Decline,
        TaskKind::Clarify { candidates } => return Action::Clarify { candidates: candidates.clone() },
        TaskKind::Unrouted => return lookup(deps, None, &task.text).unwrap_or(Action::Answer),
        TaskKind::Intent { intent, specialist, .. } => (intent, specialist),
    };
    let declared = deps.specialists.get(specialist);
    if declared.is_some_and(|s| s.spec.replies.contains_key(intent)) {
        let template = format!("{specialist}.reply.{intent}");
        let rendered = deps
            .templates
            .get_template(&template)
            .and_then(|t| t.render(minijinja::context! { facts => state.memory.facts, customer => state.customer }));
        match rendered {
            Ok(text) => return Action::Reply { text: text.trim().to_owned() },
            Err(error) => tracing::warn!(%template, %error, "fixed reply failed; answering from the knowledge base"),
        }
    }
    let Some((specialist_spec, action)) = declared.and_then(|s| s.spec.actions.get(intent).map(|a| (s, a))) else {
        // A declared specialist answers its other intents from the knowledge base; without
        // one, a lookup whose arguments the message gives is the best guess.
        return match declared {
            Some(_) => Action::Answer,
            None => lookup(deps, None, &task.text).unwrap_or(Action::Answer),
        };
    };
    if state.tool_steps >= deps.config.max_tool_steps {
        return Action::Answer;
    }
    let (arguments, missing) = arguments_for(deps, specialist_spec, intent, action, task, state);
    if missing.is_empty() {
        let approval = deps.tools.needs_approval(&action.tool, &arguments);
        return Action::Call { tool: action.tool.clone(), arguments, approval };
    }
    if let Some(lookup) = lookup_first(deps, specialist_spec, intent, action, task, state) {
        return lookup;
    }
    // A request the router is sure of stays ("refund A-10022" is no order lookup, though the
    // number alone would suit one); an unsure one may belong elsewhere.
    let sure = matches!(&task.kind, TaskKind::Intent { confidence, .. } if *confidence >= SURE_FROM);
    if state.hops < deps.config.max_hops && !sure {
        if let Some(other) = hand_back(deps, specialist, &action.tool, &task.text) {
            return Action::HandBack { intent: other };
        }
    }
    Action::Ask { tool: action.tool.clone(), missing }
}

/// The action's lookup, to be made before its call: when it is declared, not made yet,
/// wanted for this message, and its own arguments are all known.
fn lookup_first(
    deps: &Deps,
    specialist: &Specialist,
    intent: &str,
    action: &ActionSpec,
    task: &Task,
    state: &TurnState,
) -> Option<Action> {
    let lookup = action.lookup.as_ref()?;
    if state.lookup.is_some() || state.tool_steps >= deps.config.max_tool_steps {
        return None;
    }
    let key = format!("{}.{intent}", specialist.spec.name);
    if deps.lookup_when.get(&key).is_some_and(|when| !when.is_match(&task.text)) {
        return None;
    }
    let plain = ActionSpec { tool: lookup.tool.clone(), arguments: Default::default(), lookup: None };
    let (arguments, missing) = arguments_for(deps, specialist, intent, &plain, task, state);
    missing.is_empty().then(|| Action::Call { tool: lookup.tool.clone(), arguments, approval: false })
}

/// Whether `tool`, just called, is the lookup of the current task's action.
fn is_lookup(deps: &Deps, state: &TurnState, tool: &str) -> bool {
    let Some((intent, _, specialist)) = state.intent() else { return false };
    let action = deps.specialists.get(specialist).and_then(|s| s.spec.actions.get(intent));
    action.is_some_and(|a| a.tool != tool && a.lookup.as_ref().is_some_and(|l| l.tool == tool))
}

/// A lookup tool (among the specialist's, or any without one) whose arguments are all in
/// `text`.
fn lookup(deps: &Deps, specialist: Option<&Specialist>, text: &str) -> Option<Action> {
    let allowed = |tool: &str| specialist.is_none_or(|s| s.spec.tools.iter().any(|t| t == tool));
    let (spec, arguments) = deps.tools.find_lookup_among(text, allowed)?;
    Some(Action::Call { tool: spec.name.clone(), arguments, approval: false })
}

/// Another specialist's low-risk action (with another tool than `tool`, the one whose
/// arguments are missing) whose arguments the text gives in full: the message was probably
/// meant for it.
fn hand_back(deps: &Deps, current: &str, tool: &str, text: &str) -> Option<String> {
    let given: Vec<String> = deps.tools.facts_in(text).into_iter().map(|(parameter, _)| parameter).collect();
    deps.specialists.values().filter(|s| s.spec.name != current).find_map(|s| {
        s.spec.actions.iter().filter(|(_, action)| action.tool != tool).find_map(|(intent, action)| {
            let spec = deps.tools.spec(&action.tool)?;
            let required = required(&spec.parameters);
            let complete = !required.is_empty() && required.iter().all(|r| given.contains(r));
            (complete && spec.risk == crate::Risk::Low).then(|| intent.clone())
        })
    })
}

pub(super) fn required(schema: &Value) -> Vec<String> {
    schema["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// The arguments of `action` from the conversation: its templates, the facts the customer
/// gave, the customer's own reference, amounts of money in the request; and the required
/// ones still missing.
fn arguments_for(
    deps: &Deps,
    specialist: &Specialist,
    intent: &str,
    action: &ActionSpec,
    task: &Task,
    state: &TurnState,
) -> (Value, Vec<String>) {
    let Some(spec) = deps.tools.spec(&action.tool) else { return (json!({}), vec![]) };
    let empty = Map::new();
    let properties = spec.parameters["properties"].as_object().unwrap_or(&empty);
    let mut arguments = Map::new();
    for (name, property) in properties {
        if name == "approved_by" {
            continue;
        }
        let templated = action.arguments.contains_key(name).then(|| {
            let template = format!("{}.{intent}.{name}", specialist.spec.name);
            let context = minijinja::context! {
                message => task.text, facts => state.memory.facts, customer => state.customer, lookup => state.lookup,
            };
            deps.templates
                .get_template(&template)
                .and_then(|t| t.render(context))
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
                .map(|text| typed(property, text))
        });
        let value = templated.flatten().or_else(|| {
            if let Some(fact) = state.memory.facts.get(name) {
                Some(Value::String(fact.clone()))
            } else if property["type"] == "integer" && name.ends_with("_cents") {
                money_cents(&task.text).map(Value::from)
            } else {
                state
                    .customer
                    .as_ref()
                    .filter(|c| deps.tools.accepts(&action.tool, name, c))
                    .map(|c| Value::String(c.clone()))
            }
        });
        if let Some(value) = value {
            arguments.insert(name.clone(), value);
        }
    }
    let missing = required(&spec.parameters).into_iter().filter(|r| !arguments.contains_key(r)).collect();
    (Value::Object(arguments), missing)
}

fn typed(property: &Value, text: String) -> Value {
    match property["type"].as_str() {
        Some("integer") => text.parse::<i64>().map(Value::from).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// The first amount of money in `text`, in cents: `$45`, `45.50 USD`, `€12,99`, `30 dollars`,
/// or, failing those, a bare amount with cents (`149.99`).
fn money_cents(text: &str) -> Option<i64> {
    static BARE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(\d{1,7}[.,]\d{2})\b").expect("bare amount"));
    marked_money_cents(text).or_else(|| BARE.captures(text).and_then(|c| cents_of(c.get(1)?.as_str())))
}

fn marked_money_cents(text: &str) -> Option<i64> {
    static MONEY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)(?:[$€£]|\b(?:usd|eur|gbp))\s?(\d{1,7}(?:[.,]\d{1,2})?)\b|\b(\d{1,7}(?:[.,]\d{1,2})?)\s?(?:[$€£]|(?:usd|eur|gbp|dollars?|euros?|pounds?)\b)",
        )
        .expect("money pattern")
    });
    let captures = MONEY.captures(text)?;
    cents_of(captures.get(1).or_else(|| captures.get(2))?.as_str())
}

fn cents_of(amount: &str) -> Option<i64> {
    let amount = amount.replace(',', ".");
    let (whole, fraction) = amount.split_once('.').unwrap_or((&amount, ""));
    let cents = format!("{fraction:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// Makes the call the specialist decided on; a call that needs approval first pauses the
/// turn until an operator decides.
struct Tools(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for Tools {
    async fn run(&self, state: &mut TurnState, ctx: &Ctx) -> Result<Flow, NodeError> {
        let Action::Call { tool, arguments, approval } = state.action.clone() else { return Ok(Flow::Continue) };
        let deps = &self.0;
        let mut approved_by = None;
        if approval {
            match ctx.resumed_with() {
                None => return self.ask_approval(state, ctx, &tool, &arguments).await,
                Some(decision) if decision["expired"] == true => {
                    state.action = Action::Called { tool, arguments, outcome: CallOutcome::Expired };
                    return Ok(Flow::Continue);
                }
                Some(decision) if decision["approved"] != true => {
                    let by = decision["by"].as_str().unwrap_or("an operator").to_owned();
                    let reason = decision["reason"].as_str().map(str::to_owned);
                    state.action = Action::Called { tool, arguments, outcome: CallOutcome::Denied { by, reason } };
                    return Ok(Flow::Continue);
                }
                Some(decision) => approved_by = decision["by"].as_str().map(str::to_owned),
            }
        }
        let display = deps.tools.spec(&tool).and_then(|s| s.display.clone());
        ctx.emit(AgentEvent::ToolStarted { name: tool.clone(), display }).await;
        let mut sent = arguments.clone();
        let declares_approver =
            deps.tools.spec(&tool).is_some_and(|s| s.parameters["properties"]["approved_by"].is_object());
        if let (Some(by), true, Some(map)) = (&approved_by, declares_approver, sent.as_object_mut()) {
            map.insert("approved_by".into(), Value::String(by.clone()));
        }
        let call = call_context(state, ctx);
        let outcome = match deps.tools.call(deps.store.as_ref(), &call, &tool, sent, approved_by.as_deref()).await {
            Ok(result) => {
                ctx.emit(AgentEvent::ToolFinished {
                    name: tool.clone(),
                    outcome: result.outcome.as_str().to_owned(),
                    latency_ms: result.latency_ms,
                })
                .await;
                CallOutcome::Done { ok: result.is_ok(), data: result.data, latency_ms: result.latency_ms, approved_by }
            }
            Err(crate::ToolError::InvalidArguments { problems, .. }) => CallOutcome::Refused { problems },
            Err(other) => return Err(other.into()),
        };
        state.tool_steps += 1;
        state.action = Action::Called { tool, arguments, outcome };
        Ok(Flow::Continue)
    }
}

impl Tools {
    /// Records the approval (once per run, whatever happens to the process) and pauses.
    async fn ask_approval(
        &self,
        state: &mut TurnState,
        ctx: &Ctx,
        tool: &str,
        arguments: &Value,
    ) -> Result<Flow, NodeError> {
        let deps = &self.0;
        let pending = deps.store.pending_approvals(&state.tenant).await?;
        let approval = match pending.into_iter().find(|a| a.run_id == ctx.run_id() && a.tool == tool) {
            Some(existing) => existing,
            None => {
                let now = concierge_core::now();
                let ttl =
                    chrono::Duration::seconds(i64::try_from(deps.config.approval_ttl_secs).unwrap_or(i64::MAX / 2));
                let approval = Approval {
                    id: ApprovalId::new(),
                    tenant_id: state.tenant.clone(),
                    conversation_id: state.conversation,
                    run_id: ctx.run_id().to_owned(),
                    tool: tool.to_owned(),
                    arguments: arguments.clone(),
                    status: ApprovalStatus::Pending,
                    requested_at: now,
                    expires_at: Some(now + ttl),
                    decided_by: None,
                    decided_at: None,
                    reason: None,
                };
                deps.store.create_approval(&approval).await?;
                approval
            }
        };
        let id = approval.id.to_string();
        let mut part = ReplyPart::new(
            "That needs a colleague's approval, so I have passed it on for review. I will confirm here as soon as \
             it has been decided.",
            "approval_pending",
        );
        part.metadata["approval"] = json!({ "id": id, "tool": tool, "arguments": arguments });
        annotate(&mut part, state, &self.0);
        if let Some(guard) = &state.guard {
            part.metadata["guard"] = guard.clone();
            if refused(state) {
                part.metadata[ANSWERED_BY] = json!("guard");
            }
        }
        state.replies.push(part);
        state.sent = state.replies.len();
        ctx.emit(AgentEvent::ApprovalRequired {
            approval_id: id.clone(),
            tool: tool.to_owned(),
            arguments: arguments.clone(),
        })
        .await;
        Ok(ctx.interrupt_with_id(id, "approval", json!({ "tool": tool, "arguments": arguments })))
    }
}

/// Where a tool call of this step happens: its idempotency key is the turn's and the step's,
/// the same when the step runs again after a crash.
fn call_context(state: &TurnState, ctx: &Ctx) -> CallContext {
    CallContext {
        tenant: state.tenant.clone(),
        conversation: state.conversation,
        turn: state.turn,
        step: u32::try_from(ctx.step()).unwrap_or(u32::MAX),
    }
}

/// Decides whether the turn goes to a person.
struct CheckEscalation(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for CheckEscalation {
    async fn run(&self, state: &mut TurnState, _: &Ctx) -> Result<Flow, NodeError> {
        let reasons = self.0.escalation.reasons(state);
        if !reasons.is_empty() {
            state.escalation = Some(Escalation { reasons, ticket: None });
        }
        Ok(Flow::Continue)
    }
}

/// Opens a ticket with a summary of the conversation, in the helpdesk and in the store.
struct Escalate(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for Escalate {
    async fn run(&self, state: &mut TurnState, ctx: &Ctx) -> Result<Flow, NodeError> {
        let deps = &self.0;
        let reasons = state
            .escalation
            .as_ref()
            .map(|e| e.reasons.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| vec![STEP_LIMIT.to_owned()]);
        if let Some(ticket) = state.memory.ticket.clone() {
            ctx.emit(AgentEvent::Escalated { ticket: ticket.clone() }).await;
            state.escalation = Some(Escalation { reasons, ticket: Some(ticket) });
            state.tasks.clear();
            return Ok(Flow::Continue);
        }
        let subject = subject(&reasons, state);
        let description = handover(state, &reasons);
        let priority = if reasons.iter().any(|r| r == NEGATIVE_SENTIMENT || r.starts_with(POLICY_TOPIC)) {
            TicketPriority::High
        } else {
            TicketPriority::Normal
        };
        let external = self.helpdesk_ticket(state, ctx, &subject, &description, priority).await?;
        let now = concierge_core::now();
        let ticket = Ticket {
            id: TicketId::new(),
            tenant_id: state.tenant.clone(),
            conversation_id: Some(state.conversation),
            subject,
            summary: description,
            priority,
            status: TicketStatus::Open,
            external_ref: external.clone(),
            created_at: now,
            updated_at: now,
        };
        deps.store.create_ticket(&ticket).await?;
        deps.store.set_conversation_status(&state.tenant, state.conversation, ConversationStatus::Escalated).await?;
        let reference = external.unwrap_or_else(|| ticket.id.to_string());
        ctx.emit(AgentEvent::Escalated { ticket: reference.clone() }).await;
        state.escalation = Some(Escalation { reasons, ticket: Some(reference) });
        state.tasks.clear();
        Ok(Flow::Continue)
    }
}

impl Escalate {
    /// The helpdesk's reference for a new ticket, when a ticket tool is configured and the
    /// helpdesk answered; `None` otherwise (the store's ticket stands in).
    async fn helpdesk_ticket(
        &self,
        state: &TurnState,
        ctx: &Ctx,
        subject: &str,
        description: &str,
        priority: TicketPriority,
    ) -> Result<Option<String>, NodeError> {
        let deps = &self.0;
        let Some(tool) = deps.escalation.config().ticket_tool.as_deref() else { return Ok(None) };
        let Some(spec) = deps.tools.spec(tool) else { return Ok(None) };
        let declared = |name: &str| spec.parameters["properties"][name].is_object();
        let mut arguments = json!({ "subject": subject, "description": description });
        if declared("priority") {
            arguments["priority"] = json!(priority.as_str());
        }
        for name in ["customer_id", "order_id"] {
            let value = state
                .memory
                .facts
                .get(name)
                .cloned()
                .or_else(|| (name == "customer_id").then(|| state.customer.clone()).flatten());
            if let Some(value) = value.filter(|_| declared(name)) {
                arguments[name] = json!(value);
                if !deps.tools.arguments_valid(tool, &arguments) {
                    arguments.as_object_mut().map(|a| a.remove(name));
                }
            }
        }
        let call = call_context(state, ctx);
        ctx.emit(AgentEvent::ToolStarted { name: tool.to_owned(), display: spec.display.clone() }).await;
        match deps.tools.call(deps.store.as_ref(), &call, tool, arguments, None).await {
            Ok(result) if result.is_ok() => {
                let reference =
                    ["id", "ticket_id", "number"].iter().find_map(|k| result.data[*k].as_str().map(str::to_owned));
                Ok(reference)
            }
            Ok(result) => {
                tracing::warn!(conversation = %state.conversation, outcome = %result.outcome.as_str(), "helpdesk refused the ticket; kept in Concierge");
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(conversation = %state.conversation, %error, "ticket tool failed; kept in Concierge");
                Ok(None)
            }
        }
    }
}

fn subject(reasons: &[String], state: &TurnState) -> String {
    let first = reasons.first().map(String::as_str).unwrap_or(STEP_LIMIT);
    let why = match first {
        ASKED_FOR_HUMAN => "Customer asked to speak to a person".to_owned(),
        NEGATIVE_SENTIMENT => "Customer is very unhappy".to_owned(),
        STEP_LIMIT => "The assistant could not finish this request".to_owned(),
        other if other.starts_with(POLICY_TOPIC) => {
            format!("Policy topic: {}", other.trim_start_matches(POLICY_TOPIC).trim_start_matches(':'))
        }
        REPEATED_FAILURE => "The assistant failed to help twice".to_owned(),
        _ => "The request is still unclear after clarifying questions".to_owned(),
    };
    match state.memory.facts.get("order_id") {
        Some(order) => format!("{why} (order {order})"),
        None => why,
    }
}

/// What the person taking over needs: why, what happened before, the last messages.
fn handover(state: &TurnState, reasons: &[String]) -> String {
    let mut text = format!("Escalated because: {}.\n", reasons.join(", "));
    if !state.memory.facts.is_empty() {
        let facts: Vec<String> = state.memory.facts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        text.push_str(&format!("Details given: {}.\n", facts.join(", ")));
    }
    if let Some(summary) = &state.memory.summary {
        text.push_str(&format!("\nEarlier:\n{summary}\n"));
    }
    text.push_str("\nLast messages:\n");
    for message in &state.memory.window {
        text.push_str(&format!("{}: {}\n", message.role.as_str(), message.content));
    }
    text.push_str(&format!("customer: {}\n", state.message));
    text.chars().take(4900).collect()
}

/// Puts the reply for the current task into words, then moves on to the next task.
struct Respond(Arc<Deps>);

#[async_trait]
impl Node<TurnState, AgentEvent> for Respond {
    async fn run(&self, state: &mut TurnState, _: &Ctx) -> Result<Flow, NodeError> {
        let mut part = match &state.escalation {
            Some(escalation) => self.handed_over(state, escalation).await?,
            None => self.reply(state).await?,
        };
        annotate(&mut part, state, &self.0);
        if let Some(guard) = &state.guard {
            part.metadata["guard"] = guard.clone();
            if refused(state) {
                part.metadata[ANSWERED_BY] = json!("guard");
            }
        }
        state.replies.push(part);
        if state.escalation.is_none() {
            if let Some(next) = state.tasks.pop_front() {
                state.task = Some(next);
                state.action = Action::Undecided;
                state.hops = 0;
                state.native.clear();
                state.native_queue.clear();
                state.native_model.clear();
                state.lookup = None;
            }
        }
        Ok(Flow::Continue)
    }
}

impl Respond {
    async fn reply(&self, state: &TurnState) -> Result<ReplyPart, NodeError> {
        let deps = &self.0;
        Ok(match &state.action {
            Action::Called { tool, arguments, outcome } => {
                let mut part = tool_reply(deps, tool, arguments, outcome);
                if let Some(next) = follow_up(deps, state, tool) {
                    part.metadata[FOLLOW_UP] = next;
                }
                native::annotate_model(&mut part, state);
                part
            }
            Action::Phrase { text } => {
                let Some(last) = state.native.last() else { return self.answer_from_knowledge(state, false).await };
                let tool = &last.call.name;
                let mut templated = tool_reply(deps, tool, &last.call.arguments, &last.outcome);
                if let Some(next) = follow_up(deps, state, tool) {
                    templated.metadata[FOLLOW_UP] = next;
                }
                native::phrased(deps, state, text, templated)
            }
            Action::Ask { tool, missing } => {
                let mut part = self.ask_with_knowledge(state, tool, missing).await?;
                native::annotate_model(&mut part, state);
                part
            }
            Action::Reply { text } => ReplyPart::new(text.clone(), "fixed_reply"),
            Action::Clarify { candidates } => clarify(deps, candidates),
            Action::Decline => self.answer_from_knowledge(state, true).await?,
            Action::Answer | Action::Undecided | Action::Call { .. } | Action::HandBack { .. } => {
                self.answer_from_knowledge(state, false).await?
            }
        })
    }

    async fn answer_from_knowledge(&self, state: &TurnState, out_of_scope: bool) -> Result<ReplyPart, NodeError> {
        let deps = &self.0;
        let task = state.task.as_ref();
        let question = task.map_or(state.message.as_str(), |t| t.text.as_str());
        let (intent, confidence) = state.intent().map_or((None, None), |(i, c, _)| (Some(i), Some(c)));
        let intents_detected = state.tasks.len() + usize::from(task.is_some()) + state.replies.len();
        let request = AnswerRequest {
            conversation: state.conversation,
            question,
            history: &state.memory.window,
            prompt: specialist_of(deps, state).map(|s| &s.prompt),
            out_of_scope,
            intent,
            confidence,
            intents_detected,
        };
        Ok(deps.answerer.answer(request).await?)
    }

    /// The question for the missing arguments, after what the knowledge base says about
    /// the request in general, when it says something: "how long do refunds take" is
    /// answered at once, and the customer can still give the order to have it checked.
    async fn ask_with_knowledge(
        &self,
        state: &TurnState,
        tool: &str,
        missing: &[String],
    ) -> Result<ReplyPart, NodeError> {
        let question = ask(&self.0, state, tool, missing);
        let known = self.answer_from_knowledge(state, false).await?;
        if known.metadata[FAILED] == true || known.metadata["grounded"] != true {
            return Ok(question);
        }
        let mut part = known;
        part.text = format!("{}\n\n{}", part.text.trim(), question.text);
        part.metadata[ANSWERED_BY] = json!("ask");
        part.metadata[ASKED_FOR] = question.metadata[ASKED_FOR].clone();
        Ok(part)
    }

    /// The ticket notice, after the reply to what was done, if something was.
    async fn handed_over(&self, state: &TurnState, escalation: &Escalation) -> Result<ReplyPart, NodeError> {
        let ticket = escalation.ticket.as_deref().unwrap_or("(pending)");
        let notice = if state.memory.ticket.as_deref() == Some(ticket) {
            format!("A colleague already has this conversation under ticket {ticket} and will reply here.")
        } else {
            format!(
                "I have passed this conversation to a colleague, who will pick it up from here. Your ticket number \
                 is {ticket}."
            )
        };
        let mut part = match &state.action {
            Action::Called { .. } | Action::Phrase { .. } => {
                let mut done = self.reply(state).await?;
                done.text = format!("{}\n\n{notice}", done.text);
                done
            }
            _ => ReplyPart::new(notice, "escalation"),
        };
        part.metadata["escalation"] = json!({ "reasons": escalation.reasons, "ticket": escalation.ticket });
        Ok(part)
    }
}

fn specialist_of<'a>(deps: &'a Deps, state: &TurnState) -> Option<&'a Specialist> {
    state.intent().and_then(|(_, _, specialist)| deps.specialists.get(specialist))
}

/// What a reply records so that the next message can continue the current request with
/// `missing`: the intent, its specialist, the tool.
fn awaiting(state: &TurnState, tool: &str, missing: Vec<String>) -> Option<Value> {
    let (intent, _, specialist) = state.intent()?;
    let awaiting =
        Awaiting { intent: intent.to_owned(), specialist: specialist.to_owned(), tool: tool.to_owned(), missing };
    Some(json!(awaiting))
}

/// The reply from a tool's result, through the tool's answer template.
fn tool_reply(deps: &Deps, tool: &str, arguments: &Value, outcome: &CallOutcome) -> ReplyPart {
    let (text, failed) = match outcome {
        CallOutcome::Done { ok, data, .. } => {
            let text = deps.tools.render_result(tool, arguments, data, *ok).unwrap_or_else(|| {
                if *ok {
                    "That is done.".to_owned()
                } else {
                    "I could not complete that just now. Please try again in a moment, or ask for a person and \
                     they will help."
                        .to_owned()
                }
            });
            (text, !ok)
        }
        CallOutcome::Denied { reason, .. } => {
            let why = reason.as_deref().map(|r| format!(" The reason given: {r}.")).unwrap_or_default();
            (
                format!(
                    "A colleague reviewed this request and could not approve it.{why} If you would like to discuss \
                     it, ask for a person and they will help."
                ),
                false,
            )
        }
        CallOutcome::Expired => (
            "The approval for this request lapsed before anyone could review it, so nothing was changed. Ask again \
             or ask for a person, and we will pick it up."
                .to_owned(),
            false,
        ),
        CallOutcome::Refused { .. } => {
            ("I could not do that with the details I have. Could you check them, or ask for a person?".to_owned(), true)
        }
    };
    let mut part = ReplyPart::new(text, "tool");
    part.metadata["grounded"] = json!(matches!(outcome, CallOutcome::Done { .. }));
    let (outcome_name, latency, approver) = match outcome {
        CallOutcome::Done { ok, latency_ms, approved_by, .. } => {
            (if *ok { "ok" } else { "error" }, Some(*latency_ms), approved_by.clone())
        }
        CallOutcome::Denied { by, .. } => ("denied", None, Some(by.clone())),
        CallOutcome::Expired => ("expired", None, None),
        CallOutcome::Refused { .. } => ("refused", None, None),
    };
    part.metadata["tool"] = json!({ "name": tool, "arguments": arguments, "outcome": outcome_name, "latency_ms": latency, "approved_by": approver });
    if failed {
        part.metadata[FAILED] = json!(true);
    }
    part
}

/// After a low-risk lookup, what lets the next message continue it with another value.
fn follow_up(deps: &Deps, state: &TurnState, tool: &str) -> Option<Value> {
    let spec = deps.tools.spec(tool).filter(|s| s.risk == crate::Risk::Low)?;
    awaiting(state, tool, required(&spec.parameters))
}

/// A question for the arguments still missing, in the words of their schema descriptions.
fn ask(deps: &Deps, state: &TurnState, tool: &str, missing: &[String]) -> ReplyPart {
    let spec = deps.tools.spec(tool);
    let described: Vec<String> = missing
        .iter()
        .map(|name| {
            let property = spec.map(|s| &s.parameters["properties"][name]);
            match property.and_then(|p| p["description"].as_str()) {
                Some(description) => lowercase_first(description),
                None => name.replace('_', " "),
            }
        })
        .collect();
    let text = format!("I can help with that. Could you give me {}?", described.join(" and "));
    let mut part = ReplyPart::new(text, "ask");
    if let Some(asked) = awaiting(state, tool, missing.to_vec()) {
        part.metadata[ASKED_FOR] = asked;
    }
    part
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // "Order number, e.g. A-10024" → "your order number, e.g. A-10024"
        Some(first) => format!("your {}{}", first.to_lowercase(), chars.as_str()),
        None => String::new(),
    }
}

/// Which of two intents the customer means, each in its description's words.
fn clarify(deps: &Deps, candidates: &[String]) -> ReplyPart {
    let describe = |intent: &String| {
        deps.intents
            .get(intent)
            .map(|i| i.description.clone())
            .filter(|d| !d.is_empty())
            .map(|d| lowercase_first(&d).trim_start_matches("your ").trim_end_matches('.').to_owned())
            .unwrap_or_else(|| intent.replace('_', " "))
    };
    let options: Vec<String> = candidates.iter().map(describe).collect();
    let text = format!(
        "I want to make sure I help with the right thing. Is this about {}? A few more words about what you \
         need would help.",
        options.join(", or about ")
    );
    let mut part = ReplyPart::new(text, CLARIFY);
    part.metadata["candidates"] = json!(candidates);
    part
}

/// What every reply part records of the turn: intent, specialist and its prompt version.
fn annotate(part: &mut ReplyPart, state: &TurnState, deps: &Deps) {
    if let Some((intent, confidence, specialist)) = state.intent() {
        part.metadata["intent"] = json!(intent);
        part.metadata["confidence"] = json!(confidence);
        part.metadata["specialist"] = json!(specialist);
        if let Some(s) = deps.specialists.get(specialist) {
            part.metadata["prompt"] = json!({ "specialist": s.spec.name, "version": s.prompt.version });
        }
    }
    if part.metadata.get(ANSWERED_BY).is_none() {
        part.metadata[ANSWERED_BY] = json!("unknown");
    }
}

/// The reply text and metadata from the parts after the first `from`.
pub(crate) fn compose(state: &TurnState, from: usize) -> (String, Value) {
    let parts = &state.replies[from.min(state.replies.len())..];
    let text = parts.iter().map(|p| p.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n\n");
    let mut metadata = match parts {
        [one] => one.metadata.clone(),
        _ => {
            let citations: Vec<Value> =
                parts.iter().flat_map(|p| p.metadata["citations"].as_array().cloned().unwrap_or_default()).collect();
            let mut several = json!({
                ANSWERED_BY: "several",
                "citations": citations,
                "parts": parts.iter().map(|p| &p.metadata).collect::<Vec<_>>(),
            });
            if let Some(first) = parts.first() {
                several["intent"] = first.metadata["intent"].clone();
            }
            if let Some(asked) = parts.iter().rev().find_map(|p| p.metadata.get(ASKED_FOR)) {
                several[ASKED_FOR] = asked.clone();
            }
            if parts.iter().any(|p| p.metadata[FAILED] == true) {
                several[FAILED] = json!(true);
            }
            several
        }
    };
    if let Some(routing) = &state.routing {
        metadata["routing"] = routing.clone();
    }
    if let Some(escalation) = &state.escalation {
        metadata["escalation"] = json!(escalation);
    }
    (text, metadata)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::support::{AgentConfig, AnswerError, Answerer, EscalationPolicy, Prompt};
    use crate::{BackendSpec, IntentSpec, ToolRegistry, ToolSpec};

    /// A test double: `decide` never asks the knowledge base.
    struct NeverAsked;

    #[async_trait]
    impl Answerer for NeverAsked {
        async fn answer(&self, _: AnswerRequest<'_>) -> Result<ReplyPart, AnswerError> {
            Err(AnswerError("decide must not ask the knowledge base".into()))
        }
    }

    /// The demo's tools, intents' specialists and `[agent]`, over an in-memory store.
    async fn demo_deps() -> Deps {
        #[derive(serde::Deserialize)]
        struct Demo {
            backends: BTreeMap<String, BackendSpec>,
            tools: Vec<ToolSpec>,
            agent: AgentConfig,
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("examples/acme/concierge.toml")).unwrap();
        let demo: Demo = toml::from_str(&text).unwrap();
        let tools = ToolRegistry::new(&demo.tools, &demo.backends, |_| None).unwrap();
        let intents = crate::router::datasets::read_intents(&root.join("examples/acme/intents.toml")).unwrap();
        let specialists = demo
            .agent
            .specialists
            .iter()
            .map(|spec| {
                let prompt = Prompt { version: "test".into(), text: "test".into() };
                (spec.name.clone(), Specialist { spec: spec.clone(), prompt })
            })
            .collect();
        let mut templates = minijinja::Environment::new();
        for spec in &demo.agent.specialists {
            for (intent, action) in &spec.actions {
                for (argument, source) in &action.arguments {
                    templates.add_template_owned(format!("{}.{intent}.{argument}", spec.name), source.clone()).unwrap();
                }
            }
        }
        let lookup_when = demo
            .agent
            .specialists
            .iter()
            .flat_map(|s| {
                s.actions.iter().filter_map(move |(intent, action)| {
                    let when = action.lookup.as_ref()?.when.as_ref()?;
                    Some((format!("{}.{intent}", s.name), Regex::new(when).unwrap()))
                })
            })
            .collect();
        Deps {
            store: concierge_store::open("sqlite::memory:").await.unwrap(),
            tools: Arc::new(tools),
            router: None,
            answerer: Arc::new(NeverAsked),
            tool_model: None,
            route_model: None,
            lookup_when,
            specialists,
            intents: intents.into_iter().map(|i: IntentSpec| (i.name.clone(), i)).collect(),
            escalation: EscalationPolicy::new(demo.agent.escalation.clone()),
            config: demo.agent,
            templates,
        }
    }

    /// A turn as the specialist sees it: routed, and with the facts load_context found.
    fn turn(deps: &Deps, message: &str, intent: &str, specialist: &str) -> TurnState {
        let mut state =
            TurnState::new("acme".parse().unwrap(), concierge_core::ConversationId::new(), 1, message.into());
        state.memory.facts = deps.tools.facts_in(message).into_iter().collect();
        let kind = TaskKind::Intent { intent: intent.into(), confidence: 0.7, specialist: specialist.into() };
        state.task = Some(Task { text: message.into(), kind });
        state
    }

    #[tokio::test]
    async fn a_specialist_calls_its_tool_asks_for_what_is_missing_or_hands_back_what_is_not_its_own() {
        let deps = demo_deps().await;
        let call = decide(&deps, &turn(&deps, "where is a-10024", "order_status", "orders"));
        assert_eq!(
            call,
            Action::Call { tool: "get_order".into(), arguments: json!({ "order_id": "A-10024" }), approval: false }
        );
        let ask = decide(&deps, &turn(&deps, "my order never came", "order_status", "orders"));
        assert_eq!(ask, Action::Ask { tool: "get_order".into(), missing: vec!["order_id".into()] });
        // Routed to orders, but it only gives a customer number: the account specialist's.
        let misrouted = decide(&deps, &turn(&deps, "points balance for C-1001 please", "order_status", "orders"));
        assert_eq!(misrouted, Action::HandBack { intent: "loyalty_points".into() });
        let mut bounced = turn(&deps, "points balance for C-1001 please", "order_status", "orders");
        bounced.hops = deps.config.max_hops;
        assert!(matches!(decide(&deps, &bounced), Action::Ask { .. }), "hops are bounded");
        let refund = decide(&deps, &turn(&deps, "refund $150 on A-10007 please", "refund_request", "billing"));
        let Action::Call { tool, arguments, approval } = refund else { panic!("{refund:?}") };
        assert_eq!((tool.as_str(), approval), ("create_refund", true));
        assert_eq!(arguments["amount_cents"], 15000);
        let small = decide(&deps, &turn(&deps, "refund $20 on A-10021", "refund_request", "billing"));
        assert!(matches!(small, Action::Call { approval: false, .. }), "{small:?}");
        // "In full": the order is looked up first, and its total is the amount.
        let mut full = turn(&deps, "please refund order A-10007 in full", "refund_request", "billing");
        let lookup = decide(&deps, &full);
        assert_eq!(
            lookup,
            Action::Call { tool: "get_order".into(), arguments: json!({ "order_id": "A-10007" }), approval: false }
        );
        full.lookup = Some(json!({ "id": "A-10007", "total_cents": 29998, "refund": { "amount_cents": 4998 } }));
        let Action::Call { tool, arguments, approval } = decide(&deps, &full) else { panic!("a call") };
        assert_eq!((tool.as_str(), arguments["amount_cents"].as_i64(), approval), ("create_refund", Some(25000), true));
        // Without those words no lookup: the amount is asked for; a request the router is
        // sure of is not handed back to the order lookup its number alone would suit.
        let mut vague = turn(&deps, "I'd like a refund on A-10007", "refund_request", "billing");
        assert!(matches!(decide(&deps, &vague), Action::HandBack { .. }), "unsure: perhaps an order question");
        vague.task.as_mut().unwrap().kind =
            TaskKind::Intent { intent: "refund_request".into(), confidence: 0.95, specialist: "billing".into() };
        let vague = decide(&deps, &vague);
        assert!(matches!(&vague, Action::Ask { missing, .. } if missing == &["amount_cents"]), "{vague:?}");
        // An intent of a declared specialist without an action is the knowledge base's.
        assert_eq!(decide(&deps, &turn(&deps, "A-10024 arrived broken", "damaged_item", "orders")), Action::Answer);
    }

    #[test]
    fn amounts_of_money_are_read_in_cents() {
        assert_eq!(money_cents("refund $45 please"), Some(4500));
        assert_eq!(money_cents("a refund of 45.50 USD"), Some(4550));
        assert_eq!(money_cents("€12,99 back"), Some(1299));
        assert_eq!(money_cents("give me 30 dollars back"), Some(3000));
        assert_eq!(money_cents("$ 7.5"), Some(750));
        assert_eq!(money_cents("I want my 149.99 back"), Some(14999));
        assert_eq!(money_cents("order A-10024 arrived broken"), None);
        assert_eq!(money_cents("I waited 3 weeks"), None);
    }
}
