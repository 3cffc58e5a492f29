//! Where sentences end, found once for everything that cuts text: the chunker, and the
//! grounding gate that checks an answer sentence by sentence.

use std::ops::Range;

/// The byte ranges of the sentences of one line or paragraph, trimmed, in order. A
/// sentence ends at `.`, `!` or `?` followed by whitespace or the end of the text, so
/// figures (`$7.99`), versions (`2.1`) and addresses (`help.example.com`) stay whole.
/// Text after the last end is a sentence too. Ranges hold at least one letter or digit.
pub fn sentence_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let ends = matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if ends {
            push_trimmed(text, start..at + c.len_utf8(), &mut spans);
            start = at + c.len_utf8();
        }
    }
    push_trimmed(text, start..text.len(), &mut spans);
    spans
}

/// `range` of `text` without its leading and trailing whitespace.
pub fn trim_span(text: &str, range: Range<usize>) -> Range<usize> {
    let part = &text[range.clone()];
    let start = range.start + (part.len() - part.trim_start().len());
    start..start + part.trim().len()
}

fn push_trimmed(text: &str, range: Range<usize>, spans: &mut Vec<Range<usize>>) {
    let span = trim_span(text, range);
    if text[span.clone()].chars().any(char::is_alphanumeric) {
        spans.push(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<&str> {
        sentence_spans(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn sentences_end_at_stops_followed_by_space_but_not_inside_figures_or_names() {
        assert_eq!(
            split("  Plans cost $7.99 a month. Or $79.00 a year! See help.example.com?  Then"),
            ["Plans cost $7.99 a month.", "Or $79.00 a year!", "See help.example.com?", "Then"]
        );
    }

    #[test]
    fn punctuation_alone_is_no_sentence() {
        assert!(split(" ... ").is_empty());
        assert!(split("").is_empty());
        assert_eq!(split("One. — . Two."), ["One.", "Two."]);
    }
}
