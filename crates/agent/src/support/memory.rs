//! What a conversation remembers at the start of a turn, rebuilt from its stored messages:
//! the last messages verbatim within a token cap, one summary line per older turn, the
//! facts the customer gave (however long ago), what the last reply asked for, and how the
//! last replies went.
//!
//! Rebuilt rather than kept: the stored transcript is the truth, so a resumed or moved
//! conversation remembers exactly what it said.

use concierge_core::{Message, Role};
use serde_json::Value;

use super::config::MemoryConfig;
use super::state::{Awaiting, Memory};
use crate::ToolRegistry;

/// Metadata keys every agent reply carries, read back here.
pub(crate) const ANSWERED_BY: &str = "answered_by";
pub(crate) const ASKED_FOR: &str = "asked_for";
/// A lookup just answered: a next message giving another value for its arguments
/// ("sorry, it's A-10055") continues it.
pub(crate) const FOLLOW_UP: &str = "follow_up";
pub(crate) const FAILED: &str = "failed";
pub(crate) const CLARIFY: &str = "clarify";

/// The memory for the customer message numbered `turn` of `messages` (the whole stored
/// conversation, oldest first).
pub fn remember(messages: &[Message], turn: i64, tools: &ToolRegistry, config: &MemoryConfig) -> Memory {
    let mut memory = Memory::default();
    for message in messages.iter().filter(|m| m.role == Role::User && m.seq <= turn) {
        for (parameter, value) in tools.facts_in(&message.content) {
            memory.facts.insert(parameter, value);
        }
    }
    let earlier: Vec<&Message> = messages
        .iter()
        .filter(|m| m.seq < turn && matches!(m.role, Role::User | Role::Assistant | Role::Operator))
        .collect();
    let window_start = window_start(&earlier, config);
    memory.window = earlier[window_start..].iter().map(|m| (*m).clone()).collect();
    memory.summary = summarise(&earlier[..window_start], config.summary_lines);
    let replies: Vec<&Message> = earlier.iter().copied().filter(|m| m.role == Role::Assistant).collect();
    memory.awaiting = replies.last().and_then(|m| awaiting(&m.metadata));
    memory.ticket = replies.iter().rev().find_map(|m| m.metadata["escalation"]["ticket"].as_str().map(str::to_owned));
    memory.clarifications = trailing(&replies, |m| m.metadata[ANSWERED_BY] == CLARIFY);
    memory.failures = trailing(&replies, |m| m.metadata[FAILED] == true);
    memory
}

/// Where the window begins: at most `window_messages` back, fewer when they hold more than
/// `window_tokens` (about four characters a token).
fn window_start(earlier: &[&Message], config: &MemoryConfig) -> usize {
    let mut start = earlier.len().saturating_sub(config.window_messages);
    let tokens = |ms: &[&Message]| ms.iter().map(|m| m.content.chars().count().div_ceil(4)).sum::<usize>();
    while start < earlier.len() && tokens(&earlier[start..]) > config.window_tokens {
        start += 1;
    }
    start
}

/// How many of the last `replies` in a row satisfy `test`.
fn trailing(replies: &[&Message], test: impl Fn(&Message) -> bool) -> u32 {
    replies.iter().rev().take_while(|m| test(m)).count() as u32
}

fn awaiting(metadata: &Value) -> Option<Awaiting> {
    let asked = metadata.get(ASKED_FOR).or_else(|| metadata.get(FOLLOW_UP))?;
    serde_json::from_value(asked.clone()).ok()
}

/// One line per customer turn before the window (the last `lines` of them): what was asked
/// and what was done about it, read from the reply's metadata.
fn summarise(older: &[&Message], lines: usize) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, message) in older.iter().enumerate() {
        if message.role != Role::User {
            continue;
        }
        let reply = older[i + 1..].iter().take_while(|m| m.role != Role::User).find(|m| m.role == Role::Assistant);
        out.push(summary_line(message, reply.map(|m| &m.metadata)));
    }
    if out.is_empty() {
        return None;
    }
    let skip = out.len().saturating_sub(lines);
    Some(out[skip..].join("\n"))
}

fn summary_line(question: &Message, reply: Option<&Value>) -> String {
    let empty = Value::Null;
    let meta = reply.unwrap_or(&empty);
    let mut line = match meta["intent"].as_str() {
        Some(intent) => format!("- The customer asked about {}", intent.replace('_', " ")),
        None => format!("- The customer wrote \"{}\"", shorten(&question.content, 80)),
    };
    if let Some(tool) = meta["tool"]["name"].as_str() {
        let args = meta["tool"]["arguments"].as_object().map(|a| {
            a.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect::<Vec<_>>()
        });
        line.push_str(&format!("; {tool} was called"));
        if let Some(args) = args.filter(|a| !a.is_empty()) {
            line.push_str(&format!(" with {}", args.join(", ")));
        }
    }
    let titles: Vec<&str> =
        meta["citations"].as_array().into_iter().flatten().filter_map(|c| c["title"].as_str()).collect();
    if !titles.is_empty() {
        line.push_str(&format!("; answered from \"{}\"", titles.join("\", \"")));
    }
    if let Some(ticket) = meta["escalation"]["ticket"].as_str() {
        line.push_str(&format!("; ticket {ticket} was opened"));
    }
    if meta[FAILED] == true {
        line.push_str("; that did not help");
    }
    line.push('.');
    line
}

fn shorten(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use concierge_core::{ConversationId, MessageId};
    use serde_json::json;

    use super::*;
    use crate::tools::{BackendSpec, ToolSpec};

    fn tools() -> ToolRegistry {
        let order: ToolSpec = serde_json::from_value(json!({
            "name": "get_order", "description": "Look up an order", "backend": "shop", "method": "GET",
            "path": "/orders/{order_id}", "lookup": true, "answer": "{{ result.status }}",
            "parameters": { "type": "object", "required": ["order_id"],
                            "properties": { "order_id": { "type": "string", "pattern": "^A-[0-9]{5}$" } } }
        }))
        .unwrap();
        let backends =
            BTreeMap::from([("shop".to_owned(), BackendSpec { url: "http://127.0.0.1:9".into(), token_env: None })]);
        ToolRegistry::new(&[order], &backends, |_| None).unwrap()
    }

    fn message(seq: i64, role: Role, content: &str, metadata: Value) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            tenant_id: "acme".parse().unwrap(),
            seq,
            role,
            content: content.into(),
            metadata,
            created_at: concierge_core::now(),
        }
    }

    /// A conversation of `turns` exchanges, then the customer's current message.
    fn conversation(turns: i64) -> Vec<Message> {
        let mut messages = Vec::new();
        for t in 0..turns {
            let user = if t == 0 { "where is a-10024?".to_owned() } else { format!("question number {t}") };
            messages.push(message(2 * t + 1, Role::User, &user, json!({})));
            let meta = if t == 0 {
                json!({ "intent": "order_status", "tool": { "name": "get_order", "arguments": { "order_id": "A-10024" } } })
            } else {
                json!({ "intent": "product_info", "citations": [{ "title": "Product lineup" }], "failed": t >= turns - 2 })
            };
            messages.push(message(2 * t + 2, Role::Assistant, &format!("answer {t}"), meta));
        }
        messages.push(message(2 * turns + 1, Role::User, "and the other one, A-10031?", json!({})));
        messages
    }

    #[test]
    fn facts_outlive_the_window_and_the_latest_mention_wins() {
        let messages = conversation(6);
        let memory = remember(&messages, 13, &tools(), &MemoryConfig::default());
        assert_eq!(memory.window.len(), 6);
        assert_eq!(memory.window.first().map(|m| m.seq), Some(7));
        // A-10024 was given in the first message, long out of the window; A-10031 now.
        assert_eq!(memory.facts.get("order_id").map(String::as_str), Some("A-10031"));
        let earlier = remember(&messages, 12, &tools(), &MemoryConfig::default());
        assert_eq!(earlier.facts.get("order_id").map(String::as_str), Some("A-10024"), "the current message excluded");
    }

    #[test]
    fn older_turns_become_summary_lines_and_the_last_replies_are_counted() {
        let memory = remember(&conversation(6), 13, &tools(), &MemoryConfig::default());
        let summary = memory.summary.expect("a summary of what scrolled out");
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3, "{summary}");
        assert_eq!(lines[0], "- The customer asked about order status; get_order was called with order_id A-10024.");
        assert_eq!(lines[1], "- The customer asked about product info; answered from \"Product lineup\".");
        assert_eq!(memory.failures, 2, "the last two replies did not help");
        assert_eq!(memory.clarifications, 0);
    }

    #[test]
    fn the_window_keeps_within_its_token_cap_dropping_the_oldest() {
        let mut messages = conversation(2);
        messages[2].content = "x".repeat(4000);
        let config = MemoryConfig { window_tokens: 100, ..MemoryConfig::default() };
        let memory = remember(&messages, 5, &tools(), &config);
        assert!(
            memory.window.iter().all(|m| m.seq > 3),
            "{:?}",
            memory.window.iter().map(|m| m.seq).collect::<Vec<_>>()
        );
    }
}
