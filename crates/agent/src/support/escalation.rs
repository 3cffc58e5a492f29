//! When a conversation goes to a person: asked for, a policy topic, strong anger, replies
//! that keep failing, questions that stay unclear.

use vader_sentimental::SentimentIntensityAnalyzer;

use super::config::EscalationConfig;
use super::state::{Action, CallOutcome, TaskKind, TurnState};

/// The escalation rules of `[agent.escalation]`, ready to apply.
pub struct EscalationPolicy {
    config: EscalationConfig,
    topics: Vec<String>,
    complaints: Vec<String>,
    sentiment: SentimentIntensityAnalyzer<'static>,
}

/// Reasons recorded on the escalation, stable for metrics and tests.
pub const ASKED_FOR_HUMAN: &str = "asked_for_human";
pub const POLICY_TOPIC: &str = "policy_topic";
pub const NEGATIVE_SENTIMENT: &str = "negative_sentiment";
pub const REPEATED_FAILURE: &str = "repeated_failure";
pub const STILL_UNCLEAR: &str = "still_unclear";
pub const STEP_LIMIT: &str = "step_limit";

impl EscalationPolicy {
    pub fn new(config: EscalationConfig) -> Self {
        let lower = |phrases: &[String]| phrases.iter().map(|t| t.to_lowercase()).collect();
        let (topics, complaints) = (lower(&config.policy_topics), lower(&config.complaint_phrases));
        EscalationPolicy { config, topics, complaints, sentiment: SentimentIntensityAnalyzer::new() }
    }

    pub fn config(&self) -> &EscalationConfig {
        &self.config
    }

    /// The VADER compound score of `text`, from -1 (most negative) to 1.
    pub fn sentiment(&self, text: &str) -> f64 {
        self.sentiment.polarity_scores(text).compound
    }

    /// Why this turn should go to a person; empty when it should not.
    pub fn reasons(&self, state: &TurnState) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(TaskKind::Intent { intent, .. }) = state.task.as_ref().map(|t| &t.kind) {
            if self.config.intents.contains(intent) {
                reasons.push(ASKED_FOR_HUMAN.to_owned());
            }
        }
        let text = state.message.to_lowercase();
        if let Some(topic) = self.topics.iter().find(|t| contains_phrase(&text, t)) {
            reasons.push(format!("{POLICY_TOPIC}:{topic}"));
        }
        let fed_up = self.complaints.iter().any(|p| contains_phrase(&text, p));
        if fed_up || self.sentiment(&state.message) <= self.config.negative_sentiment {
            reasons.push(NEGATIVE_SENTIMENT.to_owned());
        }
        let failing_now = matches!(
            &state.action,
            Action::Called { outcome: CallOutcome::Done { ok: false, .. } | CallOutcome::Refused { .. }, .. }
        );
        // Once a person holds the conversation, failing again or staying unclear does not
        // hand it over a second time; asking, a policy topic or anger still reaches them.
        let handed_over = state.memory.ticket.is_some();
        if !handed_over
            && state.memory.failures + u32::from(failing_now) >= self.config.max_failures
            && self.config.max_failures > 0
        {
            reasons.push(REPEATED_FAILURE.to_owned());
        }
        if !handed_over
            && matches!(state.action, Action::Clarify { .. })
            && state.memory.clarifications >= self.config.max_clarifications
        {
            reasons.push(STILL_UNCLEAR.to_owned());
        }
        reasons
    }
}

/// Whether `phrase` occurs in `text` as whole words.
fn contains_phrase(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::state::{Task, TurnState};

    fn state(message: &str) -> TurnState {
        let mut state =
            TurnState::new("acme".parse().unwrap(), concierge_core::ConversationId::new(), 1, message.to_owned());
        state.task = Some(Task { text: message.to_owned(), kind: TaskKind::Unrouted });
        state
    }

    fn policy() -> EscalationPolicy {
        EscalationPolicy::new(EscalationConfig {
            policy_topics: vec!["lawyer".into(), "chargeback".into()],
            complaint_phrases: vec!["ridiculous".into(), "third time".into()],
            ..EscalationConfig::default()
        })
    }

    #[test]
    fn an_ordinary_question_stays_with_the_agent() {
        assert!(policy().reasons(&state("Where is my parcel? It was due yesterday.")).is_empty());
        assert!(policy().reasons(&state("The kettle is not heating, what should I check?")).is_empty());
    }

    #[test]
    fn fury_a_policy_topic_or_a_request_for_a_person_escalates() {
        let furious = "This is absolutely terrible, the worst service ever, I hate this useless company!";
        assert_eq!(policy().reasons(&state(furious)), [NEGATIVE_SENTIMENT]);
        let fed_up = "Third time writing about this. Two weeks for a kettle, this is RIDICULOUS.";
        assert_eq!(policy().reasons(&state(fed_up)), [NEGATIVE_SENTIMENT]);
        assert_eq!(policy().reasons(&state("I will talk to my lawyer about this")), ["policy_topic:lawyer"]);
        // Whole words only.
        assert!(policy().reasons(&state("my lawyers' office address changed")).is_empty());
        let mut asked = state("can I talk to someone");
        asked.task = Some(Task {
            text: asked.message.clone(),
            kind: TaskKind::Intent { intent: "talk_to_human".into(), confidence: 0.9, specialist: "general".into() },
        });
        assert_eq!(policy().reasons(&asked), [ASKED_FOR_HUMAN]);
    }

    #[test]
    fn the_second_failure_in_a_row_escalates_and_so_does_a_third_clarification() {
        let mut failing = state("A-10059");
        failing.memory.failures = 1;
        failing.action = Action::Called {
            tool: "get_order".into(),
            arguments: serde_json::json!({}),
            outcome: CallOutcome::Done { ok: false, data: serde_json::json!({}), latency_ms: 3, approved_by: None },
        };
        assert_eq!(policy().reasons(&failing), [REPEATED_FAILURE]);
        let mut unclear = state("it doesn't work");
        unclear.action = Action::Clarify { candidates: vec!["a".into(), "b".into()] };
        unclear.memory.clarifications = 1;
        assert!(policy().reasons(&unclear).is_empty());
        unclear.memory.clarifications = 2;
        assert_eq!(policy().reasons(&unclear), [STILL_UNCLEAR]);
    }
}
