//! Redaction of text that arrives in pieces, such as a model's tokens: a card number may come
//! as `41`, `11 11`, `11 1111 1111`, and no piece on its own looks like one.
//!
//! `StreamRedactor` holds back the end of what it was given for as long as that end could
//! still grow into something to redact — the last word, and before it any run of digit
//! groups or IBAN-like groups separated by single spaces — and releases the rest, redacted.
//! Everything it can find in a whole text but postal addresses (whose words it does not hold
//! back for) it finds the same in the pieces, wherever they are cut. A held run longer than
//! `MAX_HELD` is released but for its last word (nothing redactable is that long), so a
//! stream is never held back without bound.

use crate::pii::{scanner, splice, KindSet, PiiSpan};

/// The most text held back, in bytes.
pub const MAX_HELD: usize = 96;

/// What a cut held run keeps back; longer than any finding but an address.
const KEEP: usize = 48;

/// Text before the released part that the scanner sees again as context (an "SSN:" label).
const CONTEXT: usize = 48;

/// Redacts a stream of text pieces; see the module docs.
#[derive(Debug, Clone)]
pub struct StreamRedactor {
    kinds: KindSet,
    held: String,
    released_tail: String,
}

impl StreamRedactor {
    pub fn new(kinds: KindSet) -> Self {
        StreamRedactor { kinds, held: String::new(), released_tail: String::new() }
    }

    /// Takes the next piece and returns what can be sent now (possibly nothing).
    pub fn push(&mut self, piece: &str) -> String {
        if self.kinds.is_empty() {
            return piece.to_owned();
        }
        self.held.push_str(piece);
        let cut = hold_from(&self.held);
        if cut == 0 {
            return String::new();
        }
        let rest = self.held.split_off(cut);
        let ready = std::mem::replace(&mut self.held, rest);
        self.release(&ready)
    }

    /// Everything still held, redacted: the stream has ended.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        if rest.is_empty() {
            return rest;
        }
        self.release(&rest)
    }

    fn release(&mut self, ready: &str) -> String {
        let context_len = self.released_tail.len();
        let seen = format!("{}{ready}", self.released_tail);
        let spans: Vec<PiiSpan> = scanner().scan(&seen).into_iter().filter(|s| self.kinds.contains(s.kind)).collect();
        let (out, _) = splice(&seen, context_len, &spans);
        let mut keep = seen.len().saturating_sub(CONTEXT);
        while !seen.is_char_boundary(keep) {
            keep += 1;
        }
        self.released_tail = seen[keep..].to_owned();
        out
    }
}

/// Where the part of `text` that may still grow into a finding begins.
fn hold_from(text: &str) -> usize {
    let last_word = word_start(text);
    let mut start = if last_word < text.len() {
        last_word // unfinished
    } else {
        // Ended by white space: a group followed by one space may still go on.
        match text.strip_suffix(' ') {
            Some(before) if !before.ends_with(char::is_whitespace) => {
                let from = word_start(before);
                if !groupable(&before[from..]) {
                    return text.len();
                }
                from
            }
            _ => return text.len(),
        }
    };
    // Back over earlier groups one finding could span, each after exactly one space.
    while let Some(before) = text[..start].strip_suffix(' ') {
        if before.ends_with(char::is_whitespace) {
            break;
        }
        let from = word_start(before);
        let word = &before[from..];
        if !groupable(word) {
            // A number may begin at the end of a word: "…@example.com+1 (415) …".
            if number_tail(word) {
                start = from;
            }
            break;
        }
        start = from;
    }
    if text.len() - start > MAX_HELD {
        start = capped(text);
    }
    start
}

/// Where to cut a held run that grew past `MAX_HELD`: `KEEP` bytes before its end (at a
/// word), or before a finding that crosses there. Nothing redactable is `KEEP` bytes long,
/// so a finding still growing at the end cannot reach back over the cut.
fn capped(text: &str) -> usize {
    let mut cut = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    cut += word_start(&text[cut..]).min(text.len() - cut);
    if let Some(span) = scanner().scan(text).into_iter().find(|span| span.range.start < cut && cut < span.range.end) {
        cut = span.range.start;
    }
    cut
}

/// Where the last word of `text` begins (its length when it ends with white space).
fn word_start(text: &str) -> usize {
    text.char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(at, c)| at + c.len_utf8())
}

/// A word that can be one group of a number written in groups: digits with the signs of a
/// phone number, an extension mark, or four letters and digits (the groups of an IBAN).
fn groupable(word: &str) -> bool {
    // A finding may begin inside the word: "+GB82", "(415)".
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let numeric = word.bytes().any(|c| c.is_ascii_digit())
        && word.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'(' | b')' | b'-' | b'.' | b'x' | b'#'));
    let extension = matches!(word.to_ascii_lowercase().as_str(), "x" | "ext" | "ext." | "#");
    let iban_group = word.len() == 4 && word.bytes().all(|c| c.is_ascii_alphanumeric());
    numeric || extension || iban_group
}

/// Whether `word` ends in the signs and digits a number begins with.
fn number_tail(word: &str) -> bool {
    let head = word.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '+' | '(' | ')' | '-' | '.'));
    word[head.len()..].bytes().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiKind;

    fn stream(pieces: &[&str], kinds: KindSet) -> (Vec<String>, String) {
        let mut redactor = StreamRedactor::new(kinds);
        let mut sent: Vec<String> = pieces.iter().map(|piece| redactor.push(piece)).collect();
        sent.push(redactor.finish());
        let whole = sent.concat();
        (sent, whole)
    }

    #[test]
    fn a_card_number_split_across_tokens_is_still_caught() {
        let (sent, whole) = stream(&["Your card ", "41", "11 11", "11 1111 ", "1111 is", " on file."], KindSet::all());
        assert_eq!(whole, "Your card [CARD] is on file.");
        assert!(sent.iter().all(|piece| !piece.contains("1111")), "{sent:?}");
    }

    #[test]
    fn an_email_split_across_tokens_is_still_caught() {
        let (_, whole) = stream(&["Write to ana", "@exam", "ple.com today"], KindSet::all());
        assert_eq!(whole, "Write to [EMAIL] today");
    }

    #[test]
    fn text_without_findings_passes_unchanged_and_soon() {
        let (sent, whole) = stream(&["Hello ", "there, ", "how can ", "I help?"], KindSet::all());
        assert_eq!(whole, "Hello there, how can I help?");
        assert_eq!(sent[1], "there, ", "a finished word is released at once");
    }

    #[test]
    fn only_the_chosen_kinds_are_redacted() {
        let kinds = KindSet::NONE.with(PiiKind::Card);
        let (_, whole) = stream(&["card 4111111111111111", " mail ana@example.com"], kinds);
        assert_eq!(whole, "card [CARD] mail ana@example.com");
    }

    #[test]
    fn a_long_run_of_digits_is_not_held_forever() {
        let mut redactor = StreamRedactor::new(KindSet::all());
        let mut released = 0;
        for _ in 0..100 {
            released += redactor.push("12 ").len();
        }
        assert!(released > 0);
    }
}
