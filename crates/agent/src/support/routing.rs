//! Routing by a chat model, where `[router] llm` asks for it: the model is shown every
//! intent with its description and names the one the customer's message expresses, or
//! `out_of_scope`. The classifier has always read the message first; its reading is kept
//! on the reply, and stands when the model fails or names no declared intent.

use concierge_core::Role;
use concierge_llm::{ChatMessage, ChatRequest};
use serde_json::{json, Value};

use super::nodes::UNSURE_BELOW;
use super::state::TurnState;
use super::{AgentModel, AgentModelCall, Deps};
use crate::router::{LlmRouting, Routing, Scored};

/// The name the model gives a message none of the intents covers.
const OUT_OF_SCOPE: &str = "out_of_scope";

/// Whether the model should read a message the classifier routed as `routing`.
pub(crate) fn wanted(mode: LlmRouting, routing: &Routing, similarity_floor: f32) -> bool {
    match mode {
        LlmRouting::Off => false,
        LlmRouting::Always => true,
        LlmRouting::Unsure => match routing {
            Routing::Clarify { .. } => true,
            Routing::Intent { intent, .. } => intent.confidence < UNSURE_BELOW,
            Routing::OutOfScope { similarity, .. } => *similarity >= similarity_floor,
            Routing::Several { .. } => false,
        },
    }
}

/// The model's routing of the message, and what to record of it; `None` when the model
/// failed or named nothing declared (the classifier's routing stands).
pub(crate) async fn route(
    deps: &Deps,
    model: &dyn AgentModel,
    state: &TurnState,
    classified: &Routing,
) -> Option<(Routing, Value)> {
    let request = request(deps, state);
    let call = AgentModelCall { conversation: state.conversation, request: &request, intent: None, confidence: None };
    let answer = match model.next(call).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(conversation = %state.conversation, %error, "routing model failed; the classifier decides");
            return None;
        }
    };
    let Some(named) = named_intent(&answer.response.text) else {
        tracing::warn!(conversation = %state.conversation, "routing model named no intent; the classifier decides");
        return None;
    };
    let routing = if named == OUT_OF_SCOPE {
        let (nearest, similarity) = match classified {
            Routing::OutOfScope { nearest, similarity } => (nearest.clone(), *similarity),
            other => (read_as(other).first().map(|s| (*s).clone())?, 0.0),
        };
        Routing::OutOfScope { nearest, similarity }
    } else {
        let spec = deps.intents.get(&named)?;
        let confidence = confidence_in(classified, &named).unwrap_or(UNSURE_BELOW);
        Routing::Intent { intent: Scored { intent: named, confidence }, specialist: spec.specialist.clone() }
    };
    let record = json!({
        "decision": "llm",
        "routing": routing,
        "classifier": classified,
        "model": answer.metadata,
    });
    Some((routing, record))
}

/// The intents the classifier's reading names, likeliest first.
fn read_as(routing: &Routing) -> Vec<&Scored> {
    match routing {
        Routing::Intent { intent, .. } => vec![intent],
        Routing::Several { intents } => intents.iter().map(|(s, _)| s).collect(),
        Routing::Clarify { candidates } => candidates.iter().collect(),
        Routing::OutOfScope { nearest, .. } => vec![nearest],
    }
}

/// The classifier's confidence in `intent`, when its reading named it.
fn confidence_in(routing: &Routing, intent: &str) -> Option<f32> {
    read_as(routing).into_iter().find(|s| s.intent == intent).map(|s| s.confidence)
}

/// The intent a model's answer names: `{"intent": "…"}`, possibly wrapped in prose or a
/// code fence.
fn named_intent(text: &str) -> Option<String> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let value: Value = serde_json::from_str(text.get(start..=end)?).ok()?;
    let name = value["intent"].as_str()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Every intent with what it means, the last exchange, and the message.
fn request(deps: &Deps, state: &TurnState) -> ChatRequest {
    let mut catalogue = String::new();
    for (name, spec) in &deps.intents {
        let meaning = if spec.description.is_empty() {
            spec.examples.first().map(|e| format!("e.g. \"{e}\"")).unwrap_or_default()
        } else {
            spec.description.clone()
        };
        catalogue.push_str(&format!("- {name}: {meaning}\n"));
    }
    catalogue.push_str(&format!("- {OUT_OF_SCOPE}: anything none of the above covers\n"));
    let system = format!(
        "You route customer support messages. The intents:\n{catalogue}\nName the one intent the customer's \
         last message expresses, reading it in the light of the conversation. Answer with a JSON object only: \
         {{\"intent\": \"<name>\"}}."
    );
    let mut messages = vec![ChatMessage::system(system)];
    let recent = state.memory.window.iter().rev().take(2).collect::<Vec<_>>();
    for message in recent.into_iter().rev() {
        match message.role {
            Role::User => messages.push(ChatMessage::user(message.content.clone())),
            Role::Assistant | Role::Operator => messages.push(ChatMessage::assistant(message.content.clone())),
            _ => {}
        }
    }
    messages.push(ChatMessage::user(state.message.clone()));
    ChatRequest {
        messages,
        json_mode: true,
        temperature: Some(0.0),
        max_tokens: Some(40),
        seed: Some(0),
        ..ChatRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(intent: &str, confidence: f32) -> Scored {
        Scored { intent: intent.into(), confidence }
    }

    #[test]
    fn the_model_reads_what_the_classifier_is_unsure_of() {
        let sure = Routing::Intent { intent: scored("order_status", 0.9), specialist: "orders".into() };
        let unsure = Routing::Intent { intent: scored("order_status", 0.5), specialist: "orders".into() };
        let clarify = Routing::Clarify { candidates: [scored("a", 0.4), scored("b", 0.3)] };
        let near = Routing::OutOfScope { nearest: scored("a", 0.2), similarity: 0.6 };
        let far = Routing::OutOfScope { nearest: scored("a", 0.2), similarity: 0.1 };
        let unsure_mode = |r: &Routing| wanted(LlmRouting::Unsure, r, 0.4);
        assert!(!unsure_mode(&sure) && unsure_mode(&unsure) && unsure_mode(&clarify) && unsure_mode(&near));
        assert!(!unsure_mode(&far), "far from every example stays out of scope");
        assert!(wanted(LlmRouting::Always, &sure, 0.4) && !wanted(LlmRouting::Off, &clarify, 0.4));
    }

    #[test]
    fn the_intent_is_read_from_json_even_in_prose() {
        assert_eq!(named_intent(r#"{"intent": "order_status"}"#).as_deref(), Some("order_status"));
        assert_eq!(
            named_intent("Sure:\n```json\n{\"intent\":\"refund_request\"}\n```").as_deref(),
            Some("refund_request")
        );
        assert_eq!(named_intent("order_status"), None);
        assert_eq!(named_intent(r#"{"intent": ""}"#), None);
        assert_eq!(named_intent(r#"{"label": "x"}"#), None);
    }

    #[test]
    fn a_chosen_intent_keeps_the_classifiers_confidence_in_it() {
        let clarify = Routing::Clarify { candidates: [scored("a", 0.4), scored("b", 0.3)] };
        assert_eq!(confidence_in(&clarify, "b"), Some(0.3));
        assert_eq!(confidence_in(&clarify, "c"), None);
    }
}
