//! Properties of the scanner and the stream redactor over generated text: no input makes a
//! scan panic or return a span that is not on character boundaries; what redaction leaves holds
//! nothing checksum-confirmed; a text cut into pieces anywhere is redacted exactly as the
//! whole text is.

use concierge_guard::{scanner, KindSet, PiiKind, StreamRedactor};
use proptest::prelude::*;

/// Words of a support conversation, and what separates them.
fn word() -> impl Strategy<Value = (String, &'static str)> {
    (
        prop::sample::select(vec![
            "the",
            "order",
            "A-10024",
            "is",
            "late",
            "please",
            "call",
            "me",
            "my",
            "card",
            "SSN:",
            "mail",
            "Bob",
            "WEST",
            "ext.",
            "x",
            "(0)",
            "12",
            "2026-12-06",
            "10:30",
            "$1 234",
            "v1.2.3",
            "it's",
            "—",
            "über",
        ]),
        prop::sample::select(vec![" ", " ", " ", ", ", ". ", "\n"]),
    )
        .prop_map(|(word, gap)| (word.to_owned(), gap))
}

/// Personal data written in several ways, and numbers that are not; each followed by
/// punctuation or a word, as in a sentence (a run of numbers a space apart is ambiguous).
fn value() -> impl Strategy<Value = (String, &'static str)> {
    (
        prop_oneof![
            prop::sample::select(vec![
                "4111 1111 1111 1111",
                "4111111111111111",
                "378282246310005",
                "123-45-6789",
                "ana.lopez@example.com",
                "+1 (415) 555-0134",
                "+1 (415) 555-0134 ext. 12",
                "0490 75 40 81",
                "905-674-3793",
                "GB82 WEST 1234 5698 7654 32",
                "gb42nawi04454264788619",
            ])
            .prop_map(str::to_owned),
            "[0-9]{1,12}",
            "[a-zA-Z0-9@.+-]{1,10}",
        ],
        prop::sample::select(vec![", ", ". ", "\n", " and ", " please ", "? "]),
    )
}

fn conversation() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![word(), value()], 0..24)
        .prop_map(|parts| parts.into_iter().map(|(word, gap)| word + gap).collect())
}

fn streamable() -> KindSet {
    PiiKind::ALL.into_iter().filter(|kind| *kind != PiiKind::Address).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_scans_without_panicking_into_ordered_spans(text in any::<String>()) {
        let spans = scanner().scan(&text);
        for pair in spans.windows(2) {
            prop_assert!(pair[0].range.end <= pair[1].range.start);
        }
        for span in &spans {
            prop_assert!(text.is_char_boundary(span.range.start) && text.is_char_boundary(span.range.end));
            prop_assert!(span.range.start < span.range.end);
        }
    }

    #[test]
    fn redaction_leaves_no_card_iban_or_email_behind(text in conversation()) {
        let redacted = scanner().redact(&text, KindSet::all()).into_owned();
        let left: Vec<_> = scanner()
            .scan(&redacted)
            .into_iter()
            .filter(|span| matches!(span.kind, PiiKind::Card | PiiKind::Iban | PiiKind::Email))
            .collect();
        prop_assert!(left.is_empty(), "{redacted:?}: {left:?}");
    }

    #[test]
    fn a_stream_cut_anywhere_is_redacted_as_the_whole_text(
        text in conversation(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(text.len() + 1)).collect();
        points.retain(|at| text.is_char_boundary(*at));
        points.sort_unstable();
        points.dedup();
        let mut redactor = StreamRedactor::new(streamable());
        let mut sent = String::new();
        let mut at = 0;
        for point in points.into_iter().chain([text.len()]) {
            sent.push_str(&redactor.push(&text[at..point]));
            at = point;
        }
        sent.push_str(&redactor.finish());
        prop_assert_eq!(sent, scanner().redact(&text, streamable()).into_owned());
    }
}
