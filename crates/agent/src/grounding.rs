//! The grounding gate: a generated answer reaches the customer sentence by sentence, each
//! sentence only when the evidence it was written from supports it.
//!
//! A sentence is supported by one evidence text (a passage, a tool result) when
//! 1. every figure in it (amounts, durations, counts, dates, order and ticket numbers)
//!    appears in that text;
//! 2. enough of its content words appear in that text (stemmed, function words aside);
//! 3. it does not deny what the closest sentences of that text affirm, nor the reverse.
//!
//! The checks are lexical and strict on purpose: a dropped true sentence costs the
//! customer a shorter answer, a sent false one costs the company a broken promise. A
//! sentence that only admits not knowing is no claim and passes. Nothing here knows where
//! the evidence came from.

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

use concierge_retrieval::sentence_spans;
use regex::Regex;
use rust_stemmers::{Algorithm, Stemmer};
use serde::Serialize;

/// One text an answer may rest on, numbered as the model was shown it (`[n]`).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub n: usize,
    pub text: &'a str,
}

/// How strict the gate is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundingGate {
    /// Share of a sentence's content words that must appear in the evidence supporting it.
    pub min_word_coverage: f32,
}

impl Default for GroundingGate {
    fn default() -> Self {
        Self { min_word_coverage: 0.7 }
    }
}

/// Why a sentence was not sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unsupported {
    /// A figure that no evidence contains.
    Figure { figure: String },
    /// Too few of its words are in any evidence.
    Wording { coverage: f32 },
    /// It says the opposite of the evidence closest to it.
    Polarity,
}

/// A sentence that passed, with the evidence it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supported {
    pub text: String,
    /// The evidence numbers it rests on; empty for an admission of not knowing.
    pub cites: Vec<usize>,
}

/// A sentence that did not pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub text: String,
    #[serde(flatten)]
    pub why: Unsupported,
}

/// What the gate made of an answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub supported: Vec<Supported>,
    pub rejected: Vec<Rejected>,
}

impl Verdict {
    /// The supported sentences with their citations, or `None` when no sentence rests on
    /// evidence (nothing, or only admissions of not knowing). Consecutive sentences resting
    /// on the same evidence are cited once, after the last of them.
    pub fn answer(&self) -> Option<String> {
        if self.supported.iter().all(|s| s.cites.is_empty()) {
            return None;
        }
        let sentences: Vec<String> = self
            .supported
            .iter()
            .enumerate()
            .map(|(i, sentence)| {
                let same_as_next = self.supported.get(i + 1).is_some_and(|next| next.cites == sentence.cites);
                if same_as_next {
                    sentence.text.clone()
                } else {
                    sentence.cited()
                }
            })
            .collect();
        Some(sentences.join(" "))
    }

    /// Every evidence number the sent answer cites, in order.
    pub fn cited(&self) -> BTreeSet<usize> {
        self.supported.iter().flat_map(|s| s.cites.iter().copied()).collect()
    }
}

impl Supported {
    fn cited(&self) -> String {
        if self.cites.is_empty() {
            return self.text.clone();
        }
        let marks: Vec<String> = self.cites.iter().map(|n| format!("[{n}]")).collect();
        // "… delivery [1]." but "… password? [1]": a question mark may belong to a quote.
        match self.text.strip_suffix('.') {
            Some(body) => format!("{body} {}.", marks.join("")),
            None => format!("{} {}", self.text, marks.join("")),
        }
    }
}

impl GroundingGate {
    /// Checks each sentence of `answer` against `evidence`. The model's own `[n]` marks
    /// are read as hints: a sentence is checked against what it cites first, then against
    /// the rest, and is cited with whatever actually supports it.
    pub fn check(&self, answer: &str, evidence: &[Evidence<'_>]) -> Verdict {
        let evidence: Vec<Prepared> = evidence.iter().map(|e| Prepared::new(*e)).collect();
        let mut verdict = Verdict::default();
        for sentence in sentences(answer) {
            let (text, hinted) = strip_citations(&sentence);
            let text = strip_preamble(&text);
            if text.is_empty() || evidence.iter().any(|e| e.is_heading(&text)) {
                continue;
            }
            if admits_not_knowing(&text) {
                verdict.supported.push(Supported { text, cites: Vec::new() });
                continue;
            }
            match self.support(&text, &hinted, &evidence) {
                Ok(n) => verdict.supported.push(Supported { text, cites: vec![n] }),
                Err(why) => verdict.rejected.push(Rejected { text, why }),
            }
        }
        verdict
    }

    /// The number of the evidence that best supports `sentence`, preferring what it cites.
    fn support(&self, sentence: &str, hinted: &[usize], evidence: &[Prepared]) -> Result<usize, Unsupported> {
        let claim = Claim::new(sentence);
        let mut order: Vec<&Prepared> = evidence.iter().collect();
        order.sort_by_key(|e| !hinted.contains(&e.n));
        let mut best: Option<Unsupported> = None;
        for candidate in order {
            match candidate.supports(&claim, self.min_word_coverage) {
                Ok(()) => return Ok(candidate.n),
                Err(why) => best = Some(closer(best, why)),
            }
        }
        Err(best.unwrap_or(Unsupported::Wording { coverage: 0.0 }))
    }
}

/// Of two reasons against a sentence, the one closest to passing: it tells the operator
/// what was really wrong (a wrong figure in an otherwise well-worded sentence, say).
fn closer(a: Option<Unsupported>, b: Unsupported) -> Unsupported {
    let rank = |u: &Unsupported| match u {
        Unsupported::Wording { coverage } => *coverage,
        Unsupported::Figure { .. } => 2.0,
        Unsupported::Polarity => 3.0,
    };
    match a {
        Some(a) if rank(&a) >= rank(&b) => a,
        _ => b,
    }
}

/// A sentence of the answer, reduced to what is checked.
struct Claim {
    figures: Vec<String>,
    words: BTreeSet<String>,
    negated: bool,
}

impl Claim {
    fn new(sentence: &str) -> Self {
        Self { figures: figures(sentence), words: content_words(sentence), negated: negated(sentence) }
    }
}

/// An evidence text, reduced once for every sentence checked against it.
struct Prepared {
    n: usize,
    first_line: String,
    figures: HashSet<String>,
    words: HashSet<String>,
    /// Each clause's content words and whether it is negated.
    clauses: Vec<(BTreeSet<String>, bool)>,
}

impl Prepared {
    fn new(evidence: Evidence<'_>) -> Self {
        let text = evidence.text;
        let first_line = text.lines().next().map(normalise_heading).unwrap_or_default();
        let clauses: Vec<(BTreeSet<String>, bool)> =
            sentences(text).iter().flat_map(|s| clauses(s)).map(|c| (content_words(c), negated(c))).collect();
        Self {
            n: evidence.n,
            first_line,
            figures: figures(text).into_iter().collect(),
            words: clauses.iter().flat_map(|(words, _)| words.iter().cloned()).collect(),
            clauses,
        }
    }

    /// A sentence that only repeats the evidence's heading line states nothing.
    fn is_heading(&self, sentence: &str) -> bool {
        !self.first_line.is_empty() && normalise_heading(sentence) == self.first_line
    }

    fn supports(&self, claim: &Claim, min_coverage: f32) -> Result<(), Unsupported> {
        if let Some(figure) = claim.figures.iter().find(|f| !self.figures.contains(*f)) {
            return Err(Unsupported::Figure { figure: figure.clone() });
        }
        if claim.words.is_empty() {
            // Nothing but figures and function words: the figures decide, and they passed.
            return if claim.figures.is_empty() { Err(Unsupported::Wording { coverage: 0.0 }) } else { Ok(()) };
        }
        let found = claim.words.iter().filter(|w| self.words.contains(*w)).count();
        let coverage = found as f32 / claim.words.len() as f32;
        if coverage < min_coverage {
            return Err(Unsupported::Wording { coverage: (coverage * 100.0).round() / 100.0 });
        }
        if !self.same_polarity(claim) {
            return Err(Unsupported::Polarity);
        }
        Ok(())
    }

    /// Whether the claim's polarity matches the evidence clauses sharing most words with it
    /// (clauses, not sentences: "if you're not happy, you can return it" affirms the
    /// return). A denial must match all of them (a wrong "no" is the costliest error); an
    /// affirmation needs one affirming clause among them.
    fn same_polarity(&self, claim: &Claim) -> bool {
        let overlap = |words: &BTreeSet<String>| words.intersection(&claim.words).count();
        let Some(most) = self.clauses.iter().map(|(words, _)| overlap(words)).max().filter(|n| *n > 0) else {
            return true;
        };
        let mut closest = self.clauses.iter().filter(|(words, _)| overlap(words) == most).map(|(_, neg)| *neg);
        if claim.negated {
            closest.all(|neg| neg)
        } else {
            closest.any(|neg| !neg)
        }
    }
}

/// The sentences of `text`: lines first (lists and headings end a sentence), then ends of
/// sentences within a line. Markdown emphasis, list markers and heading marks are dropped.
pub fn sentences(text: &str) -> Vec<String> {
    text.lines()
        .map(clean_line)
        .flat_map(|line| sentence_spans(&line).into_iter().map(|span| line[span].to_owned()).collect::<Vec<_>>())
        .collect()
}

/// `text` up to the end of its last complete sentence: an answer cut at its token limit
/// ends mid-sentence, and half a sentence is not sent.
pub fn complete_sentences(text: &str) -> &str {
    let trimmed = text.trim_end();
    if trimmed.ends_with(['.', '!', '?', ']', ')']) {
        return trimmed;
    }
    match trimmed.rfind(['.', '!', '?', '\n']) {
        Some(at) => trimmed[..=at].trim_end(),
        None => "",
    }
}

/// The clauses of a sentence, split at `,`, `;`, `:` and " but ".
fn clauses(sentence: &str) -> Vec<&str> {
    sentence.split([',', ';', ':']).flat_map(|part| part.split(" but ")).filter(|c| !c.trim().is_empty()).collect()
}

fn clean_line(line: &str) -> String {
    static MARKER: OnceLock<Regex> = OnceLock::new();
    let marker = MARKER.get_or_init(|| Regex::new(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)").expect("valid"));
    let line = line.replace("**", "").replace("__", "").replace('`', "");
    let line = if line.trim_start().starts_with('|') { line.replace('|', " ") } else { line };
    marker.replace(&line, "").trim().to_owned()
}

/// The sentence without its `[n]` marks, and the numbers they held.
fn strip_citations(sentence: &str) -> (String, Vec<usize>) {
    static MARK: OnceLock<Regex> = OnceLock::new();
    let mark = MARK.get_or_init(|| Regex::new(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]").expect("valid"));
    let cites = mark
        .captures_iter(sentence)
        .flat_map(|c| c[1].split(',').filter_map(|n| n.trim().parse().ok()).collect::<Vec<usize>>())
        .collect();
    let text = mark.replace_all(sentence, "").trim().to_owned();
    // A mark moved away leaves "word ." behind.
    let text = text.replace(" .", ".").replace(" ,", ",");
    (text, cites)
}

/// Drops "Based on the passages provided, …" and the like, which tell the customer about
/// the prompt, not about their question.
fn strip_preamble(sentence: &str) -> String {
    static PREAMBLE: OnceLock<Regex> = OnceLock::new();
    let preamble = PREAMBLE.get_or_init(|| {
        Regex::new(r"(?i)^(?:based on|according to|as (?:stated|mentioned) in)\s+(?:the\s+)?(?:information|passages?|help[- ]cent(?:re|er)|provided|given|text|articles?)[^,]{0,60},\s*")
            .expect("valid")
    });
    let rest = preamble.replace(sentence, "");
    let mut chars = rest.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn normalise_heading(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn admits_not_knowing(sentence: &str) -> bool {
    static ADMISSION: OnceLock<Regex> = OnceLock::new();
    let admission = ADMISSION.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:(?:do not|don't|does not|doesn't) (?:know|have (?:that|this|any|enough) information)|not sure|(?:can't|cannot|couldn't|could not) find|no information|(?:pass|hand|forward) (?:your|the|this) question|human colleague)\b",
        )
        .expect("valid")
    });
    admission.is_match(sentence) && figures(sentence).is_empty()
}

/// Figures in `text`: each run of digits (with `.`, `,` or `:` between digits), commas of
/// thousands dropped, so `$1,200.00` is `1200.00` and `A-10024` is `10024`.
fn figures(text: &str) -> Vec<String> {
    static FIGURE: OnceLock<Regex> = OnceLock::new();
    let figure = FIGURE.get_or_init(|| Regex::new(r"\d+(?:[.,:]\d+)*").expect("valid"));
    figure.find_iter(text).map(|m| m.as_str().replace(',', "")).collect()
}

fn negated(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’').any(|word| {
        let word = word.to_lowercase().replace('’', "'");
        NEGATIONS.contains(&word.as_str()) || word.ends_with("n't")
    })
}

const NEGATIONS: [&str; 9] = ["no", "not", "never", "cannot", "cant", "nor", "neither", "unable", "none"];

/// The stems of the words that carry meaning: function words, and words about the prompt
/// itself ("passage", "provided"), are left out.
fn content_words(text: &str) -> BTreeSet<String> {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    let stemmer = STEMMER.get_or_init(|| Stemmer::create(Algorithm::English));
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’')
        .map(|w| w.trim_matches(|c| c == '\'' || c == '’').to_lowercase())
        .filter(|w| w.chars().count() >= 2 && !w.chars().all(|c| c.is_ascii_digit()))
        .filter(|w| !w.contains('\'') && !w.contains('’'))
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| stemmer.stem(&w).into_owned())
        .collect()
}

/// English function words and words about the prompt rather than the question.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "etc",
    "even",
    "ever",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "let",
    "like",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "please",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "very",
    "via",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "yes",
    "you",
    "your",
    "yours",
    "yourself",
    "cannot",
    "never",
    "unable",
    "none",
    "neither",
    "sure",
    "certainly",
    "simply",
    "note",
    "ok",
    "okay",
    "e.g",
    "eg",
    "ie",
    // About the prompt, not the question.
    "passage",
    "passages",
    "information",
    "provided",
    "given",
    "based",
    "according",
    "mentioned",
    "stated",
    "help",
    "centre",
    "center",
    "article",
    "articles",
    "text",
    "question",
    "answer",
    "customer",
];

#[cfg(test)]
mod tests {
    use super::*;

    const RETURNS: &str = "Return policy — Overview\nIf you're not happy with something you bought from Acme, you \
can return it within 30 days of delivery for a refund, for any reason. Opened products are fine as long as \
they're undamaged and complete.";
    const SHIPPING: &str = "Shipping options — International\n- **Free Standard shipping** on every order to the \
US, Canada and the EU. For orders to Canada and the EU, please don't refuse the package.";
    const PLUS: &str = "Acme Plus — Prices\n| Plus Monthly | $7.99 per month |\n| Plus Annual | $79.00 per year |";

    fn gate(answer: &str) -> Verdict {
        let evidence =
            [Evidence { n: 1, text: RETURNS }, Evidence { n: 2, text: SHIPPING }, Evidence { n: 3, text: PLUS }];
        GroundingGate::default().check(answer, &evidence)
    }

    #[test]
    fn a_sentence_worded_from_a_passage_is_sent_and_cited_with_it() {
        let verdict = gate("You can return opened products within 30 days of delivery, as long as they are undamaged.");
        assert!(verdict.rejected.is_empty(), "{verdict:?}");
        assert_eq!(
            verdict.answer().unwrap(),
            "You can return opened products within 30 days of delivery, as long as they are undamaged [1]."
        );
    }

    #[test]
    fn a_figure_no_passage_holds_is_rejected() {
        let verdict = gate("Acme Plus costs $100 per month.");
        assert_eq!(verdict.answer(), None);
        assert_eq!(verdict.rejected[0].why, Unsupported::Figure { figure: "100".into() });
        assert!(gate("Acme Plus Monthly costs $7.99 per month.").answer().unwrap().ends_with("[3]."));
    }

    #[test]
    fn a_denial_of_what_the_passage_affirms_is_rejected() {
        for wrong in ["No, we do not ship to Canada.", "No, you cannot return an opened product."] {
            let verdict = gate(wrong);
            assert_eq!(verdict.answer(), None, "{wrong}: {verdict:?}");
            assert!(matches!(verdict.rejected[0].why, Unsupported::Polarity), "{wrong}: {verdict:?}");
        }
        assert!(gate("Yes, we ship to Canada, and standard shipping is free.").answer().is_some());
    }

    #[test]
    fn a_sentence_from_outside_the_passages_is_rejected() {
        let verdict = gate("The capital of Peru is Lima.");
        assert_eq!(verdict.answer(), None);
        assert!(matches!(verdict.rejected[0].why, Unsupported::Wording { coverage } if coverage == 0.0));
    }

    #[test]
    fn only_the_unsupported_sentences_are_dropped() {
        let verdict = gate("Standard shipping to Canada is free [2]. It arrives tomorrow by drone [2].");
        assert_eq!(verdict.answer().unwrap(), "Standard shipping to Canada is free [2].");
        assert_eq!(verdict.rejected.len(), 1);
        assert_eq!(verdict.cited(), BTreeSet::from([2]));
        let verdict = gate("You can return it within 30 days. Opened products are fine. Plus is $7.99 per month.");
        assert_eq!(
            verdict.answer().unwrap(),
            "You can return it within 30 days. Opened products are fine [1]. Plus is $7.99 per month [3].",
            "a run of sentences from one passage is cited once"
        );
    }

    #[test]
    fn a_wrong_citation_is_corrected_to_the_passage_that_supports_the_sentence() {
        let verdict = gate("Opened products can be returned if they are complete [3].");
        assert_eq!(verdict.answer().unwrap(), "Opened products can be returned if they are complete [1].");
    }

    #[test]
    fn preambles_and_echoed_headings_are_not_sent() {
        let verdict = gate("[1] Return policy — Overview\nBased on the information provided, you can return it within 30 days of delivery.");
        assert_eq!(verdict.answer().unwrap(), "You can return it within 30 days of delivery [1].");
    }

    #[test]
    fn admitting_not_knowing_passes_but_is_no_grounded_answer() {
        let verdict = gate("I'm sorry, I don't know that. I can pass your question to a human colleague.");
        assert!(verdict.rejected.is_empty(), "{verdict:?}");
        assert_eq!(verdict.supported.len(), 2);
        assert_eq!(verdict.answer(), None, "nothing in it rests on a passage");
    }

    #[test]
    fn sentences_split_at_ends_and_lines_but_not_inside_figures() {
        let split = sentences("Plans cost $7.99 a month. Or $79.00 a year!\n- **Free** shipping\n1. Step one");
        assert_eq!(split, ["Plans cost $7.99 a month.", "Or $79.00 a year!", "Free shipping", "Step one"]);
    }

    #[test]
    fn a_cut_off_answer_keeps_only_its_complete_sentences() {
        assert_eq!(complete_sentences("One. Two is cut of"), "One.");
        assert_eq!(complete_sentences("Whole [1]."), "Whole [1].");
        assert_eq!(complete_sentences("nothing complete"), "");
    }
}
