//! Golden conversations: multi-turn customer conversations with what the agent must do on
//! each turn (`examples/acme/golden.jsonl`, described in `examples/acme/GOLDEN.md`), and
//! the scoring of what an agent did against them.
//!
//! Scoring is separate from running: whoever runs the conversations (the `eval agent`
//! command, through a real server) hands in an [`Observed`] per turn.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenConversation {
    pub id: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The customer's reference (an email), or `None` for an anonymous visitor.
    pub customer: Option<String>,
    pub turns: Vec<GoldenTurn>,
    pub outcome: GoldenOutcome,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenTurn {
    pub user: String,
    pub expect: Expect,
}

/// What must happen on a turn; a key left out is not checked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `Some(None)`: the key is present and null (out of scope, or the intent carries over).
    #[serde(default, deserialize_with = "present")]
    pub intent: Option<Option<String>>,
    pub tool_calls: Option<Vec<ExpectedCall>>,
    pub asks_for: Option<Vec<String>>,
    pub cites: Option<Vec<String>>,
    pub approval: Option<bool>,
    pub escalates: Option<bool>,
    pub out_of_scope: Option<bool>,
    pub reply_mentions: Option<Vec<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCall {
    pub tool: String,
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenOutcome {
    pub resolved: bool,
    pub escalated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Line { path: String, line: usize, message: String },
}

/// Reads a golden set: one conversation per line; blank lines are skipped; ids are unique.
pub fn read_golden(path: &Path) -> Result<Vec<GoldenConversation>, GoldenError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| GoldenError::Read { path: shown.clone(), source })?;
    let mut out: Vec<GoldenConversation> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |message: String| GoldenError::Line { path: shown.clone(), line: i + 1, message };
        let conversation: GoldenConversation = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if conversation.turns.is_empty() {
            return Err(bad(format!("conversation `{}` has no turns", conversation.id)));
        }
        if out.iter().any(|c| c.id == conversation.id) {
            return Err(bad(format!("the id `{}` is used twice", conversation.id)));
        }
        out.push(conversation);
    }
    Ok(out)
}

/// What the agent did on one turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    pub reply: String,
    /// The reply's metadata as stored.
    pub metadata: Value,
    /// The tools called on this turn (or waiting for approval), with their arguments.
    pub calls: Vec<ExpectedCall>,
    /// Everything the reply may rest on: tool results, the full text of the articles it
    /// cites, what the customer wrote so far.
    pub evidence: String,
}

/// Tools the agent calls of its own accord, not as a customer's request: never compared
/// with a turn's `tool_calls` unless the expectation names them.
const SELF_CALLED: &[&str] = &["create_ticket"];

/// Hits over checks, for one kind of check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub hits: usize,
    pub total: usize,
}

impl Tally {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += usize::from(hit);
    }

    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }
}

/// A check that failed, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    pub conversation: String,
    pub turn: usize,
    pub check: &'static str,
    pub expected: String,
    pub got: String,
}

/// How the agent did on a golden set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentMetrics {
    pub conversations: usize,
    pub turns: usize,
    pub routing: Tally,
    pub tool_calls: Tally,
    pub asks_for: Tally,
    pub cites: Tally,
    pub approvals: Tally,
    pub out_of_scope: Tally,
    pub reply_mentions: Tally,
    /// Turns escalated that should have been, over turns escalated.
    pub escalation_precision: Tally,
    /// Turns escalated that should have been, over turns that should have been.
    pub escalation_recall: Tally,
    /// Conversations the agent resolved itself: no hand-over, nothing waiting, and the
    /// last reply helped.
    pub resolved: Tally,
    /// Conversations whose resolution agrees with the expected outcome.
    pub outcome_agreement: Tally,
    /// Sent answers stating facts (figures, ids, amounts) whose every fact is found in
    /// what the answer rests on.
    pub supported_answers: Tally,
    pub misses: Vec<Miss>,
}

/// Scores `observed` (one list per conversation, one entry per turn, in order) against the
/// golden set.
pub fn score(golden: &[GoldenConversation], observed: &[Vec<Observed>]) -> AgentMetrics {
    let mut m = AgentMetrics { conversations: golden.len(), ..AgentMetrics::default() };
    for (conversation, turns) in golden.iter().zip(observed) {
        for (i, (turn, seen)) in conversation.turns.iter().zip(turns).enumerate() {
            m.turns += 1;
            score_turn(&mut m, conversation, i + 1, &turn.expect, seen);
        }
        let last = turns.last();
        let escalated = turns.iter().any(|t| is_escalated(&t.metadata));
        let waiting = last.is_some_and(|t| t.metadata["answered_by"] == "approval_pending");
        let failed = last.is_none_or(|t| t.metadata["failed"] == true);
        let resolved = !escalated && !waiting && !failed && turns.len() == conversation.turns.len();
        m.resolved.add(resolved);
        m.outcome_agreement.add(resolved == conversation.outcome.resolved);
        if resolved != conversation.outcome.resolved {
            m.misses.push(Miss {
                conversation: conversation.id.clone(),
                turn: turns.len(),
                check: "outcome",
                expected: format!("resolved {}", conversation.outcome.resolved),
                got: format!("resolved {resolved}"),
            });
        }
    }
    m
}

fn score_turn(m: &mut AgentMetrics, golden: &GoldenConversation, turn: usize, expect: &Expect, seen: &Observed) {
    let conversation = golden.id.as_str();
    let meta = &seen.metadata;
    let mut miss = |check: &'static str, expected: String, got: String| {
        m.misses.push(Miss { conversation: conversation.to_owned(), turn, check, expected, got });
    };
    let mut checks: Vec<(&'static str, bool, String, String)> = Vec::new();
    if let Some(Some(intent)) = &expect.intent {
        let got = intents_of(meta);
        checks.push(("routing", got.first() == Some(intent), intent.clone(), got.join(",")));
    }
    if let Some(expected) = &expect.tool_calls {
        let named: BTreeSet<&str> = expected.iter().map(|c| c.tool.as_str()).collect();
        let made: Vec<&ExpectedCall> = seen
            .calls
            .iter()
            .filter(|c| named.contains(c.tool.as_str()) || !SELF_CALLED.contains(&c.tool.as_str()))
            .collect();
        let same = made.len() == expected.len() && expected.iter().all(|e| made.contains(&e));
        checks.push(("tool_calls", same, json_list(expected.iter()), json_list(made.into_iter())));
    }
    if let Some(missing) = &expect.asks_for {
        let asked: Vec<String> = meta["asked_for"]["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let hit = missing.iter().all(|a| asked.contains(a));
        checks.push(("asks_for", hit, missing.join(","), asked.join(",")));
    }
    if let Some(articles) = &expect.cites {
        let cited = cited_articles(meta);
        let hit = articles.iter().any(|a| cited.contains(a));
        checks.push(("cites", hit, articles.join("|"), cited.into_iter().collect::<Vec<_>>().join(",")));
    }
    if let Some(approval) = expect.approval {
        let waits = meta["answered_by"] == "approval_pending"
            || meta["parts"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|p| p["answered_by"] == "approval_pending"));
        checks.push(("approval", waits == approval, approval.to_string(), waits.to_string()));
    }
    if let Some(out) = expect.out_of_scope {
        let declined = meta["answered_by"] == "out_of_scope";
        checks.push(("out_of_scope", declined == out, out.to_string(), declined.to_string()));
    }
    if let Some(mentions) = &expect.reply_mentions {
        let reply = seen.reply.to_lowercase();
        let absent: Vec<&String> = mentions.iter().filter(|x| !reply.contains(&x.to_lowercase())).collect();
        checks.push(("reply_mentions", absent.is_empty(), mentions.join(","), format!("missing {absent:?}")));
    }
    // A turn that does not say whether it escalates may, when the conversation is
    // expected to end with a person; it is then neither right nor wrong.
    let escalated = is_escalated(meta);
    let expected_escalation = expect.escalates.unwrap_or(false);
    let undecided = expect.escalates.is_none() && golden.outcome.escalated;
    if escalated && !undecided {
        m.escalation_precision.add(expected_escalation);
    }
    if expected_escalation {
        m.escalation_recall.add(escalated);
    }
    if escalated != expected_escalation && !undecided && (expect.escalates.is_some() || escalated) {
        miss("escalation", expected_escalation.to_string(), format!("{escalated} {}", meta["escalation"]["reasons"]));
    }
    for (check, hit, expected, got) in checks {
        let tally = match check {
            "routing" => &mut m.routing,
            "tool_calls" => &mut m.tool_calls,
            "asks_for" => &mut m.asks_for,
            "cites" => &mut m.cites,
            "approval" => &mut m.approvals,
            "out_of_scope" => &mut m.out_of_scope,
            _ => &mut m.reply_mentions,
        };
        tally.add(hit);
        if !hit {
            m.misses.push(Miss { conversation: conversation.to_owned(), turn, check, expected, got });
        }
    }
    let facts = facts_of(&seen.reply);
    if !facts.is_empty() {
        let evidence = normalise(&seen.evidence);
        let unsupported: Vec<&String> = facts.iter().filter(|f| !evidence.contains(&normalise(f))).collect();
        m.supported_answers.add(unsupported.is_empty());
        if !unsupported.is_empty() {
            m.misses.push(Miss {
                conversation: conversation.to_owned(),
                turn,
                check: "supported",
                expected: "every fact in the evidence".into(),
                got: format!("unsupported {unsupported:?}"),
            });
        }
    }
}

fn is_escalated(meta: &Value) -> bool {
    meta["escalation"]["ticket"].is_string()
}

/// The intents a reply was about, first one first.
fn intents_of(meta: &Value) -> Vec<String> {
    let mut out: Vec<String> = meta["intent"].as_str().map(str::to_owned).into_iter().collect();
    for part in meta["parts"].as_array().into_iter().flatten() {
        if let Some(intent) = part["intent"].as_str().filter(|i| !out.iter().any(|o| o == i)) {
            out.push(intent.to_owned());
        }
    }
    out
}

/// The article ids a reply cites.
pub fn cited_articles(meta: &Value) -> BTreeSet<String> {
    meta["citations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["article_id"].as_str().map(str::to_owned))
        .collect()
}

fn json_list<'a>(calls: impl Iterator<Item = &'a ExpectedCall>) -> String {
    calls.map(|c| format!("{}({})", c.tool, c.arguments)).collect::<Vec<_>>().join(" ")
}

/// The facts of an answer that can be checked against its evidence: ids (`A-10024`,
/// `T-5001`), amounts and other numbers, tracking numbers. Citation markers `[n]` are not
/// facts.
pub fn facts_of(text: &str) -> Vec<String> {
    static FACT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b[A-Z]{1,3}-[0-9A-Za-z]{3,}\b|\b[0-9A-Z]*[0-9][0-9A-Z]*(?:[.,][0-9]+)*\b").expect("fact pattern")
    });
    static CITATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[\d+\]").expect("citation pattern"));
    let text = CITATION.replace_all(text, " ");
    let mut facts: Vec<String> = Vec::new();
    for m in FACT.find_iter(&text) {
        let fact = m.as_str().trim_end_matches(['.', ',']).to_owned();
        if !fact.is_empty() && !facts.contains(&fact) {
            facts.push(fact);
        }
    }
    facts
}

/// Lower case, with thousands separators and all-zero decimals dropped, so `1,250.00` in an
/// answer matches `1250` in a tool result.
fn normalise(text: &str) -> String {
    static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d),(\d{3})").expect("separator"));
    static ZEROS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d)\.0+\b").expect("zeros"));
    let text = text.to_lowercase();
    let text = SEPARATOR.replace_all(&text, "$1$2");
    ZEROS.replace_all(&text, "$1").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conversation(expect: Value, outcome: Value) -> GoldenConversation {
        serde_json::from_value(json!({
            "id": "c1", "customer": null,
            "turns": [{ "user": "where is A-10024", "expect": expect }],
            "outcome": outcome,
        }))
        .unwrap()
    }

    fn seen(reply: &str, metadata: Value, calls: Value, evidence: &str) -> Observed {
        Observed {
            reply: reply.into(),
            metadata,
            calls: serde_json::from_value(calls).unwrap(),
            evidence: evidence.into(),
        }
    }

    #[test]
    fn a_turn_that_does_everything_expected_scores_every_check() {
        let golden = conversation(
            json!({ "intent": "order_status", "tool_calls": [{ "tool": "get_order", "arguments": { "order_id": "A-10024" } }],
                    "reply_mentions": ["delayed"] }),
            json!({ "resolved": true, "escalated": false }),
        );
        let observed = seen(
            "Order A-10024 is delayed. Estimated delivery: 2026-11-28.",
            json!({ "intent": "order_status", "answered_by": "tool" }),
            json!([{ "tool": "get_order", "arguments": { "order_id": "A-10024" } }]),
            r#"{"id":"A-10024","status":"delayed","estimated_delivery":"2026-11-28"}"#,
        );
        let m = score(&[golden], &[vec![observed]]);
        assert_eq!((m.routing.hits, m.tool_calls.hits, m.reply_mentions.hits), (1, 1, 1));
        assert_eq!((m.supported_answers.hits, m.supported_answers.total), (1, 1));
        assert_eq!((m.resolved.hits, m.outcome_agreement.hits), (1, 1));
        assert!(m.misses.is_empty(), "{:?}", m.misses);
    }

    #[test]
    fn wrong_calls_invented_facts_and_missed_escalations_are_each_counted() {
        let golden = conversation(
            json!({ "intent": "talk_to_human", "tool_calls": [], "escalates": true }),
            json!({ "resolved": false, "escalated": true }),
        );
        let observed = seen(
            "Order A-10024 arrives on 2026-12-24.",
            json!({ "intent": "order_status", "answered_by": "tool" }),
            json!([{ "tool": "get_order", "arguments": { "order_id": "A-10024" } }]),
            r#"{"id":"A-10024"}"#,
        );
        let m = score(&[golden], &[vec![observed]]);
        assert_eq!((m.routing.hits, m.routing.total), (0, 1));
        assert_eq!((m.tool_calls.hits, m.tool_calls.total), (0, 1));
        assert_eq!((m.escalation_recall.hits, m.escalation_recall.total), (0, 1));
        assert_eq!(m.escalation_precision.total, 0);
        assert_eq!((m.supported_answers.hits, m.supported_answers.total), (0, 1));
        let checks: Vec<&str> = m.misses.iter().map(|x| x.check).collect();
        assert!(checks.contains(&"supported") && checks.contains(&"escalation"), "{checks:?}");
        // The agent thinks it resolved what should have gone to a person.
        assert_eq!((m.resolved.hits, m.outcome_agreement.hits), (1, 0));
    }

    #[test]
    fn the_ticket_the_agent_opens_itself_is_not_a_stray_call() {
        let golden = conversation(
            json!({ "tool_calls": [], "escalates": true }),
            json!({ "resolved": false, "escalated": true }),
        );
        let observed = seen(
            "Your ticket number is T-5001.",
            json!({ "answered_by": "escalation", "escalation": { "ticket": "T-5001", "reasons": ["asked_for_human"] } }),
            json!([{ "tool": "create_ticket", "arguments": { "subject": "x" } }]),
            "T-5001",
        );
        let m = score(&[golden], &[vec![observed]]);
        assert_eq!((m.tool_calls.hits, m.escalation_precision.hits, m.escalation_recall.hits), (1, 1, 1));
    }

    #[test]
    fn facts_are_ids_and_numbers_but_not_citation_markers() {
        assert_eq!(
            facts_of("Order A-10024 is delayed [1]. It costs $1,250.00 and ships in 5 days."),
            ["A-10024", "1,250.00", "5"]
        );
        assert!(facts_of("Select Forgot password? on the sign-in page [2].").is_empty());
        assert_eq!(normalise("144.0 USD, 1,250"), "144 usd, 1250");
    }

    #[test]
    fn a_golden_file_with_a_bad_line_or_a_repeated_id_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.jsonl");
        let line = r#"{"id":"a","customer":null,"turns":[{"user":"hi","expect":{}}],"outcome":{"resolved":true,"escalated":false}}"#;
        std::fs::write(&path, format!("{line}\n\n{line}\n")).unwrap();
        let err = read_golden(&path).unwrap_err().to_string();
        assert!(err.ends_with(":3: the id `a` is used twice"), "{err}");
        std::fs::write(&path, "{\"id\":1}\n").unwrap();
        assert!(read_golden(&path).unwrap_err().to_string().contains(":1:"));
        let acme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/golden.jsonl");
        assert!(read_golden(&acme).unwrap().len() >= 60);
    }
}
