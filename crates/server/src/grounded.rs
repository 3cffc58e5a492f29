//! The grounded answer: the request a model is given to answer from knowledge-base
//! passages, the grounding gate its answer passes, and the citations of what passed.
//!
//! Invariant: the model sees only the numbered passages (fenced as untrusted data), a few
//! earlier turns and the question; no sentence of its answer is sent unless a passage it was given supports it,
//! and every `[n]` sent points at that passage.

use std::collections::BTreeSet;

use concierge_agent::grounding::{self, Evidence, GroundingGate, Verdict};
use concierge_core::{Message, Role};
use concierge_guard::FENCE_RULE;
use concierge_llm::{ChatMessage, ChatRequest, FinishReason, LlmError};
use concierge_retrieval::{Citation, Hit};

/// The instructions of every grounded answer. Kept constant so that a model that reuses
/// computed prefixes (the embedded one does) starts each conversation from them.
pub const SYSTEM_PROMPT: &str = "You are a customer support assistant. Answer the customer's question using \
only the numbered help-centre passages in their message. Cite each passage you use as [n], right after \
the sentence it supports. If the passages do not answer the question, say plainly that you do not know \
and offer to pass the question to a human colleague; do not guess. Never invent order details such as \
statuses, dates, amounts or tracking numbers. Answer in a few short sentences, in the customer's language.";

/// Longest passage given to the model, in characters; longer ones are cut at a sentence.
const MAX_PASSAGE_CHARS: usize = 1200;

/// Earlier messages of the conversation shown to the model.
const HISTORY_MESSAGES: usize = 6;

/// Longest earlier message shown, in characters.
const MAX_HISTORY_CHARS: usize = 600;

/// The request for a grounded answer to `question` from `passages` (numbered from 1 in
/// the order given), after the last few customer and assistant turns of `history`
/// (oldest first, the question itself excluded). A specialist's own prompt follows the
/// shared instructions, which stay first so every specialist's requests share a prefix.
/// Temperature 0, so that the same question on the same passages gets the same answer and
/// can be served from a cache.
pub fn request(
    passages: &[Hit],
    history: &[Message],
    question: &str,
    specialist: Option<&str>,
    max_tokens: u32,
) -> ChatRequest {
    let system = match specialist {
        Some(prompt) => format!("{SYSTEM_PROMPT} {FENCE_RULE}\n\n{prompt}"),
        None => format!("{SYSTEM_PROMPT} {FENCE_RULE}"),
    };
    let mut messages = vec![ChatMessage::system(system)];
    messages.extend(recent_turns(history));
    let passages = concierge_guard::fence("help-centre passages", &numbered(passages));
    messages.push(ChatMessage::user(format!("Passages:\n{passages}\n\nQuestion: {question}")));
    ChatRequest { messages, temperature: Some(0.0), max_tokens: Some(max_tokens), ..Default::default() }
}

/// The last [`HISTORY_MESSAGES`] customer and assistant messages (an operator speaks for
/// the company, so as the assistant), each cut to [`MAX_HISTORY_CHARS`].
fn recent_turns(history: &[Message]) -> Vec<ChatMessage> {
    let turns: Vec<ChatMessage> = history
        .iter()
        .filter_map(|message| {
            let content = cut(&message.content, MAX_HISTORY_CHARS);
            match message.role {
                Role::User => Some(ChatMessage::user(content)),
                Role::Assistant | Role::Operator => Some(ChatMessage::assistant(content)),
                Role::System | Role::Tool => None,
            }
        })
        .collect();
    let skip = turns.len().saturating_sub(HISTORY_MESSAGES);
    turns.into_iter().skip(skip).collect()
}

/// `[n] Title — Section` then the passage, for each passage.
fn numbered(passages: &[Hit]) -> String {
    passages
        .iter()
        .enumerate()
        .map(|(i, hit)| format!("[{}] {}\n{}", i + 1, source(hit), cut(&hit.text, MAX_PASSAGE_CHARS)))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// "Title — Section", or the title alone for an article's opening section.
fn source(hit: &Hit) -> String {
    if hit.heading == hit.title {
        hit.title.clone()
    } else {
        format!("{} — {}", hit.title, hit.heading)
    }
}

/// `text` trimmed and, past `max` characters, cut at the last sentence end before it.
fn cut(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max).collect();
    let end = head.rfind(". ").map_or(head.len(), |i| i + 1);
    format!("{} …", head[..end].trim_end())
}

/// The model's answer put through the grounding gate against the passages it was given
/// (numbered from 1 in order). An answer cut at its token limit is first cut back to its
/// last whole sentence.
pub fn gate(answer: &str, finish: Option<FinishReason>, passages: &[Hit]) -> Verdict {
    let answer = if finish == Some(FinishReason::Length) { grounding::complete_sentences(answer) } else { answer };
    let texts: Vec<String> = passages.iter().map(|hit| format!("{}\n{}", source(hit), hit.text)).collect();
    let evidence: Vec<Evidence<'_>> =
        texts.iter().enumerate().map(|(i, text)| Evidence { n: i + 1, text: text.as_str() }).collect();
    GroundingGate::default().check(answer, &evidence)
}

/// The citations of the passages numbered `cited` (from 1, as given to the model);
/// numbers outside the passages are ignored.
pub fn citations(cited: &BTreeSet<usize>, passages: &[Hit]) -> Vec<Citation> {
    cited
        .iter()
        .filter_map(|&n| {
            let hit = passages.get(n.checked_sub(1)?)?;
            Some(Citation {
                n,
                article_id: hit.article_id.clone(),
                title: hit.title.clone(),
                section: hit.heading.clone(),
                url: hit.url.clone(),
            })
        })
        .collect()
}

/// The kind of a model failure, as recorded with the answer: stable, and free of
/// anything the provider echoed back.
pub fn error_kind(error: &LlmError) -> &'static str {
    match error {
        LlmError::Connect { .. } => "connect",
        LlmError::Timeout { .. } => "timeout",
        LlmError::RateLimited { .. } => "rate_limited",
        LlmError::Server { .. } => "server",
        LlmError::Rejected { .. } => "rejected",
        LlmError::MalformedStream { .. } => "malformed_stream",
        LlmError::Truncated { .. } => "truncated",
        LlmError::InvalidToolArguments { .. } => "invalid_tool_arguments",
        LlmError::UnknownTool { .. } => "unknown_tool",
        LlmError::ContextOverflow { .. } => "context_overflow",
        LlmError::Internal { .. } => "internal",
        LlmError::CircuitOpen { .. } => "circuit_open",
        LlmError::Exhausted(_) => "exhausted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_core::{ConversationId, MessageId, TenantId};
    use concierge_llm::MessageRole;
    use serde_json::json;

    fn hit(id: &str, heading: &str, text: &str) -> Hit {
        Hit {
            article_id: id.into(),
            title: format!("Title {id}"),
            heading: heading.into(),
            url: Some(format!("https://help.example/{id}")),
            text: text.into(),
            tokens: concierge_retrieval::estimate_tokens(text),
            score: 1.0,
        }
    }

    fn message(seq: i64, role: Role, content: &str) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            tenant_id: TenantId::try_from("t".to_owned()).unwrap(),
            seq,
            role,
            content: content.into(),
            metadata: json!({}),
            created_at: concierge_core::now(),
        }
    }

    #[test]
    fn the_request_numbers_passages_after_recent_turns_deterministically() {
        let passages = [hit("a", "Title a", "Alpha."), hit("b", "Steps", "Beta.")];
        let history: Vec<Message> = (1..=8)
            .map(|i| message(i, if i % 2 == 1 { Role::User } else { Role::Assistant }, &format!("turn {i}")))
            .collect();
        let request = request(&passages, &history, "How?", None, 300);
        assert_eq!(request.temperature, Some(0.0));
        assert_eq!(request.max_tokens, Some(300));
        assert_eq!(request.messages[0].role, MessageRole::System);
        assert_eq!(request.messages.len(), 1 + HISTORY_MESSAGES + 1);
        assert_eq!(request.messages[1].content, "turn 3", "the oldest turns are left out");
        let last = &request.messages.last().unwrap().content;
        assert!(last.contains("[1] Title a\nAlpha.") && last.contains("[2] Title b — Steps\nBeta."), "{last}");
        assert!(last.ends_with("Question: How?"));
    }

    #[test]
    fn citations_are_the_passages_cited_and_nothing_else() {
        let passages = [hit("a", "S", "x"), hit("b", "S", "y"), hit("c", "S", "z")];
        let cited = citations(&BTreeSet::from([0, 1, 3, 9]), &passages);
        let ids: Vec<(usize, &str)> = cited.iter().map(|c| (c.n, c.article_id.as_str())).collect();
        assert_eq!(ids, [(1, "a"), (3, "c")]);
    }

    #[test]
    fn the_gate_keeps_what_a_passage_supports_and_cites_it() {
        let passages = [
            hit(
                "reset",
                "Steps",
                "Select Forgot password? on the sign-in page. The reset link is valid for 60 minutes.",
            ),
            hit("plus", "Prices", "Plus Monthly costs $7.99 per month."),
        ];
        let verdict = gate(
            "The reset link is valid for 60 minutes [2]. Plus costs $5 per month. And then it",
            Some(FinishReason::Length),
            &passages,
        );
        assert_eq!(verdict.answer().unwrap(), "The reset link is valid for 60 minutes [1].");
        assert_eq!(verdict.rejected.len(), 1, "{verdict:?}");
        assert_eq!(citations(&verdict.cited(), &passages)[0].article_id, "reset");
    }

    #[test]
    fn long_passages_are_cut_at_a_sentence() {
        let long = "A sentence here. ".repeat(200);
        let cut = cut(&long, MAX_PASSAGE_CHARS);
        assert!(cut.chars().count() <= MAX_PASSAGE_CHARS + 2 && cut.ends_with(". …"), "{cut}");
    }
}
