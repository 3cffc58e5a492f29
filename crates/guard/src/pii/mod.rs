//! Personal data in text: payment card numbers (Luhn-checked, within the card networks'
//! issuer ranges), US social security numbers, IBANs (mod-97 checked, at their country's
//! length), email addresses, phone numbers in any country's usual writing, and postal
//! addresses (best effort: street lines, units, military and post-office boxes, US
//! city-state-ZIP lines). `Scanner::scan` finds them; `Scanner::redact` replaces the kinds
//! asked for by a placeholder such as `[CARD]`.
//!
//! Candidates are found by regular expressions and then confirmed: a number must stand alone
//! (not the tail of an identifier such as a UUID, nor run on into a time), and dates, IP
//! addresses, decimals and thousands-separated amounts are not phone numbers. Where two
//! findings overlap, the more certain kind wins, in the order of `PiiKind::ALL`.

mod address;
mod checks;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use checks::{card_issuer, iban_checksum, luhn};

/// A kind of personal data. The order is the order of precedence when findings overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Iban,
    Card,
    Ssn,
    Phone,
    Address,
}

impl PiiKind {
    pub const ALL: [PiiKind; 6] =
        [PiiKind::Email, PiiKind::Iban, PiiKind::Card, PiiKind::Ssn, PiiKind::Phone, PiiKind::Address];

    /// The name used in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Iban => "iban",
            PiiKind::Card => "card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
            PiiKind::Address => "address",
        }
    }

    /// What replaces a finding of this kind.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::Card => "[CARD]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Address => "[ADDRESS]",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a kind of personal data.
#[derive(Debug, thiserror::Error)]
#[error("unknown kind of personal data `{0}` (expected one of email, iban, card, ssn, phone, address)")]
pub struct UnknownKind(pub String);

impl FromStr for PiiKind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        PiiKind::ALL.into_iter().find(|kind| kind.name() == name).ok_or_else(|| UnknownKind(name.to_owned()))
    }
}

/// A set of kinds; in configuration, a list of their names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    pub const NONE: KindSet = KindSet(0);

    pub fn all() -> Self {
        PiiKind::ALL.into_iter().collect()
    }

    pub fn contains(self, kind: PiiKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn with(self, kind: PiiKind) -> Self {
        KindSet(self.0 | kind.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = PiiKind> {
        PiiKind::ALL.into_iter().filter(move |kind| self.contains(*kind))
    }
}

impl FromIterator<PiiKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = PiiKind>>(kinds: I) -> Self {
        kinds.into_iter().fold(KindSet::NONE, KindSet::with)
    }
}

impl Serialize for KindSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for KindSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<PiiKind>::deserialize(deserializer)?.into_iter().collect())
    }
}

/// One finding: its kind and where it is, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub range: Range<usize>,
}

/// The compiled detectors. Building one compiles a dozen expressions; `scanner()` gives the
/// process's one instance.
pub struct Scanner {
    email: Regex,
    iban: Regex,
    card: Regex,
    ssn: Regex,
    ssn_context: Regex,
    phone: Regex,
    phone_context: Regex,
    other_number_context: Regex,
    address: address::AddressFinder,
}

/// The process's scanner, compiled on first use.
pub fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::new)
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        let compile = |pattern: &str| Regex::new(pattern).expect("the PII expressions are valid");
        Scanner {
            email: compile(
                r"(?i)[a-z0-9](?:[a-z0-9._%+\-]*[a-z0-9_%+\-])?@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}\b",
            ),
            iban: compile(r"(?i)\b[a-z]{2}\d{2}(?: ?[a-z0-9]){11,30}"),
            card: compile(r"\d(?:[ \-]?\d){11,18}"),
            ssn: compile(r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9}"),
            ssn_context: compile(r"(?i)\b(?:ssn|ss#|social security|social sec|tax id|taxpayer id)\b"),
            phone: compile(
                r"(?i)(?:\+ ?\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d{1,12}(?:(?:[ .\-]|\(0\)|[ .\-]?\(\d{1,5}\)[ .\-]?)\d{1,12}){0,6}(?: ?(?:x|ext\.?|\#) ?\d{1,6}\b)?",
            ),
            phone_context: compile(
                r"(?i)\b(?:phone|mobile|cell|tel|telephone|fax|call|calls|calling|text|sms|whatsapp|desk|office|number|reach|answering|messages)\b",
            ),
            other_number_context: compile(
                r"(?i)\b(?:licen[cs]e|passport|account|acct|order|invoice|policy|member|tracking|reference|ref|serial|routing|zip|postal|postcode|id)\b",
            ),
            address: address::AddressFinder::new(),
        }
    }

    /// Every finding in `text`, in order, none overlapping another.
    pub fn scan(&self, text: &str) -> Vec<PiiSpan> {
        let mut found: Vec<PiiSpan> = Vec::new();
        // Every kind holds a digit or an `@`.
        if !text.bytes().any(|c| c.is_ascii_digit() || c == b'@') {
            return found;
        }
        // Each kind is looked for in the text with the findings of the kinds before it
        // blanked out, so that a number beside a card is not read as running on into it.
        let mut masked = text.to_owned();
        let emails = self
            .email
            .find_iter(text)
            .filter(|m| standalone(text, m.range()) || text[..m.start()].ends_with(['.', '-']))
            .map(|m| m.range())
            .collect();
        claim(&mut found, &mut masked, PiiKind::Email, emails);
        let ibans = self.ibans(&masked);
        claim(&mut found, &mut masked, PiiKind::Iban, ibans);
        let cards = self.cards(&masked);
        claim(&mut found, &mut masked, PiiKind::Card, cards);
        let ssns = self.ssns(&masked);
        claim(&mut found, &mut masked, PiiKind::Ssn, ssns);
        let addresses = self.address.find(&masked);
        // A house number before a street ("224 4966 Bond Street") is the address's.
        let phones = self
            .phones(&masked)
            .into_iter()
            .filter(|range| !addresses.iter().any(|address| address.start <= range.start && range.end < address.end))
            .collect();
        claim(&mut found, &mut masked, PiiKind::Phone, phones);
        claim(&mut found, &mut masked, PiiKind::Address, addresses);
        found.sort_by_key(|span| span.range.start);
        found
    }

    /// `text` with every finding of `kinds` replaced by its placeholder; borrowed when
    /// nothing was found.
    pub fn redact<'a>(&self, text: &'a str, kinds: KindSet) -> Cow<'a, str> {
        self.redact_noting(text, kinds).0
    }

    /// `redact`, and the kinds it replaced.
    pub fn redact_noting<'a>(&self, text: &'a str, kinds: KindSet) -> (Cow<'a, str>, KindSet) {
        if kinds.is_empty() {
            return (Cow::Borrowed(text), KindSet::NONE);
        }
        let spans: Vec<PiiSpan> = self.scan(text).into_iter().filter(|span| kinds.contains(span.kind)).collect();
        if spans.is_empty() {
            return (Cow::Borrowed(text), KindSet::NONE);
        }
        let (out, found) = splice(text, 0, &spans);
        (Cow::Owned(out), found)
    }

    fn ibans(&self, text: &str) -> Vec<Range<usize>> {
        confirmed(&self.iban, text, |m| {
            let bytes = text.as_bytes();
            let country = [bytes[m.start()].to_ascii_uppercase(), bytes[m.start() + 1].to_ascii_uppercase()];
            let length = checks::iban_length(country)?;
            // The expression runs on into whatever follows; the country says where it ends.
            let mut compact = Vec::with_capacity(length);
            let mut end = m.start();
            for (offset, c) in text[m.start()..m.end()].bytes().enumerate() {
                if c != b' ' {
                    compact.push(c);
                    end = m.start() + offset + 1;
                    if compact.len() == length {
                        break;
                    }
                }
            }
            let range = m.start()..end;
            (compact.len() == length && checks::iban_checksum(&compact) && standalone(text, range.clone()))
                .then_some(range)
        })
    }

    fn cards(&self, text: &str) -> Vec<Range<usize>> {
        confirmed(&self.card, text, |m| {
            // Separated numbers may have run on into a following number: try the longest
            // run of whole groups first.
            let candidate = m.as_str();
            let separated = candidate.contains([' ', '-']);
            let ends: Vec<usize> = if separated {
                let mut ends: Vec<usize> = candidate.match_indices([' ', '-']).map(|(at, _)| at).collect();
                ends.push(candidate.len());
                ends.reverse();
                ends
            } else {
                vec![candidate.len()]
            };
            ends.into_iter().find_map(|end| {
                let range = m.start()..m.start() + end;
                let digits: Vec<u8> = text[range.clone()].bytes().filter(u8::is_ascii_digit).collect();
                let grouped = !separated || card_grouping(&text[range.clone()]);
                (grouped
                    && (12..=19).contains(&digits.len())
                    && checks::card_issuer(&digits)
                    && checks::luhn(&text[range.clone()])
                    && standalone(text, range.clone())
                    && !text[..range.start].ends_with('+'))
                .then_some(range)
            })
        })
    }

    fn ssns(&self, text: &str) -> Vec<Range<usize>> {
        confirmed(&self.ssn, text, |m| {
            let candidate = m.as_str();
            let digits: Vec<u32> = candidate.bytes().filter(u8::is_ascii_digit).map(|d| u32::from(d - b'0')).collect();
            let number = |from: usize, to: usize| digits[from..to].iter().fold(0, |v, d| v * 10 + d);
            let issuable = checks::ssn_issuable(number(0, 3), number(3, 5), number(5, 9));
            // Dashes are how an SSN is written; nine bare or spaced digits are one only
            // when the words before say so.
            let said = candidate.contains('-') || self.context_before(text, m.start(), &self.ssn_context);
            (issuable && said && standalone(text, m.range())).then_some(m.range())
        })
    }

    fn phones(&self, text: &str) -> Vec<Range<usize>> {
        confirmed(&self.phone, text, |m| {
            // Two numbers a space apart read as one: the longest run of whole groups from
            // the start that is a phone number is the phone number.
            let candidate = m.as_str();
            let mut ends: Vec<usize> = candidate.match_indices(' ').map(|(at, _)| at).collect();
            ends.push(candidate.len());
            let named_otherwise = || {
                self.context_before(text, m.start(), &self.other_number_context)
                    && !self.context_before(text, m.start(), &self.phone_context)
            };
            if after_currency(text, m.start()) || named_otherwise() {
                return None;
            }
            // Ten or more bare digits are as often a tracking or account number: a phone
            // number only where the words around say so.
            let said =
                |end: usize| self.context_before(text, m.start(), &self.phone_context) || phone_word_after(text, end);
            ends.into_iter().rev().map(|end| m.start()..m.start() + end).find(|range| {
                let number = &text[range.clone()];
                let bare = number.bytes().all(|c| c.is_ascii_digit());
                phone_shaped(number)
                    && standalone(text, range.clone())
                    && !(weak_phone(number) && before_a_name(text, range.end))
                    && (!bare || said(range.end))
            })
        })
    }

    fn context_before(&self, text: &str, at: usize, words: &Regex) -> bool {
        let mut from = at.saturating_sub(40);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let mut window = Cow::Borrowed(&text[from..at]);
        // A placeholder left by an earlier redaction ("[SSN]") says nothing about what follows.
        for kind in PiiKind::ALL {
            if window.contains(kind.placeholder()) {
                window = Cow::Owned(window.replace(kind.placeholder(), ""));
            }
        }
        words.is_match(&window)
    }
}

/// `text` from byte `from` on, with each of `spans` (in order, none overlapping) replaced by
/// its placeholder, and the kinds replaced. A span that began before `from` is replaced
/// from `from`; one that ended before it is left out.
pub(crate) fn splice(text: &str, from: usize, spans: &[PiiSpan]) -> (String, KindSet) {
    let mut out = String::with_capacity(text.len() - from);
    let mut at = from;
    let mut found = KindSet::NONE;
    for span in spans.iter().filter(|span| span.range.end > from) {
        out.push_str(&text[at..span.range.start.max(at)]);
        out.push_str(span.kind.placeholder());
        found = found.with(span.kind);
        at = span.range.end;
    }
    out.push_str(&text[at..]);
    (out, found)
}

/// Takes the `ranges` that overlap no earlier finding as findings of `kind`, and blanks
/// them out of `masked`.
fn claim(found: &mut Vec<PiiSpan>, masked: &mut String, kind: PiiKind, ranges: Vec<Range<usize>>) {
    for range in ranges {
        if !found.iter().any(|span| span.range.start < range.end && range.start < span.range.end) {
            blank(masked, range.clone());
            found.push(PiiSpan { kind, range });
        }
    }
}

/// Replaces `range` of `text` by as many bytes of a control character that no detector
/// reads as part of anything.
fn blank(text: &mut String, range: Range<usize>) {
    let filler = "\u{1}".repeat(range.len());
    text.replace_range(range, &filler);
}

/// The candidates of `pattern` in `text` that `confirm` turns into findings. A refused
/// candidate is tried again from its next group, so that a number that ran on into its
/// neighbour does not take the neighbour down with it; an accepted one may be shorter than
/// the candidate, and the search goes on right after it.
fn confirmed(
    pattern: &Regex,
    text: &str,
    mut confirm: impl FnMut(regex::Match<'_>) -> Option<Range<usize>>,
) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let Some(m) = pattern.find_at(text, at) else { break };
        match confirm(m) {
            Some(range) => {
                at = range.end.max(m.start() + 1);
                found.push(range);
            }
            None => at = next_group(text, m.start(), m.end()),
        }
    }
    found
}

/// Where the group after the one starting at `start` begins, within `start..end` (else
/// `end`): past the first run of separators.
fn next_group(text: &str, start: usize, end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    while at < end && bytes[at].is_ascii_alphanumeric() {
        at += 1;
    }
    while at < end && !bytes[at].is_ascii_alphanumeric() {
        at += 1;
    }
    // Separators are ASCII, but a candidate may hold letters of any script.
    while at < end && !text.is_char_boundary(at) {
        at += 1;
    }
    at.max(start + 1).min(end.max(start + 1))
}

/// Whether a separated card number is grouped the way cards are printed: one kind of
/// separator, groups of three to six digits (the last may be shorter).
fn card_grouping(candidate: &str) -> bool {
    let separator = if candidate.contains(' ') { ' ' } else { '-' };
    if candidate.contains(' ') && candidate.contains('-') {
        return false;
    }
    let groups: Vec<&str> = candidate.split(separator).collect();
    let last = groups.len() - 1;
    groups.iter().enumerate().all(|(i, group)| (3..=6).contains(&group.len()) || (i == last && !group.is_empty()))
}

/// Whether the number at `range` stands on its own: not glued to letters or digits, and
/// not part of a longer token such as `…-446655440000` (a UUID) or `2026-12-06 10:30`
/// (a timestamp).
fn standalone(text: &str, range: Range<usize>) -> bool {
    let before = text[..range.start].chars().rev().take(2).collect::<Vec<char>>();
    let glued_before = match before.as_slice() {
        [c, ..] if c.is_alphanumeric() || *c == '_' => true,
        [c, d, ..] if matches!(c, '-' | '.' | '/' | ':') && (d.is_alphanumeric() || *d == '_') => true,
        _ => false,
    };
    let mut after = text[range.end..].chars();
    let glued_after = match (after.next(), after.next()) {
        (Some(c), _) if c.is_alphanumeric() || c == '_' => true,
        (Some('-' | '.' | '/' | ':'), Some(d)) if d.is_ascii_digit() => true,
        (Some('@'), _) => true,
        _ => false,
    };
    !glued_before && !glued_after
}

fn after_currency(text: &str, at: usize) -> bool {
    text[..at].trim_end().ends_with(['$', '€', '£', '¥'])
}

/// Whether a candidate from the phone expression is written like a phone number: seven to
/// fifteen digits (an extension aside), and not a date, a decimal, an amount with thousands
/// separators, an IP address or a bare short number.
fn phone_shaped(candidate: &str) -> bool {
    let main = strip_extension(candidate);
    let digits = main.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let international = main.starts_with('+');
    let groups: Vec<&str> = main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    if groups.len() == 1 {
        // A bare run of digits is too often an order, account or amount.
        return international || digits >= 10;
    }
    let separators: String = main.chars().filter(|c| matches!(c, ' ' | '.' | '-')).collect();
    let dots_only = !separators.is_empty() && separators.chars().all(|c| c == '.');
    if dots_only && groups.len() == 2 {
        return false; // 3.14159265
    }
    if dots_only && groups.len() == 4 && groups.iter().all(|g| g.len() <= 3) {
        return false; // 192.168.10.1
    }
    let dashes_only = !separators.is_empty() && separators.chars().all(|c| c == '-');
    if dashes_only && groups.len() == 2 && groups[0].len() >= 4 && groups[1].len() == 3 {
        return false; // a postal code: 3610-114, 90010-170
    }
    if !international && groups.len() >= 2 && groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3) {
        let thousands = separators.chars().all(|c| c == '.');
        if thousands && groups.len() >= 3 {
            return false; // 1.234.567
        }
    }
    !date_shaped(&groups, main)
}

/// A short number in spaced groups, without a country code, area code in parentheses or
/// extension: as often a house number as a phone number.
fn weak_phone(candidate: &str) -> bool {
    let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
    digits <= 9 && !candidate.contains(['+', '(', 'x', 'X', '#']) && !candidate.contains('.')
}

/// Whether a phone word ("fax", "mobile", "office", …) follows within a few characters.
fn phone_word_after(text: &str, end: usize) -> bool {
    let after: String = text[end..].chars().take(12).collect::<String>().to_lowercase();
    ["fax", "office", "mobile", "phone", "tel", "cell", "desk", "home", "work"].iter().any(|w| after.contains(w))
}

/// Whether a name (a capitalised word) follows on the same line.
fn before_a_name(text: &str, end: usize) -> bool {
    let mut after = text[end..].chars();
    after.next() == Some(' ') && after.next().is_some_and(char::is_uppercase)
}

/// The number without its extension (` x12`, ` ext. 12`, `#12` at its end).
fn strip_extension(candidate: &str) -> &str {
    let number = candidate.trim_end_matches(|c: char| c.is_ascii_digit());
    if number.len() == candidate.len() {
        return candidate;
    }
    let lower = number.trim_end().to_ascii_lowercase();
    for mark in ["ext.", "ext", "x", "#"] {
        if lower.ends_with(mark) {
            return candidate[..lower.len() - mark.len()].trim_end();
        }
    }
    candidate
}

/// A date written with its year first or last (`1978-04-13`, `13.04.1978`), possibly with
/// an hour after it.
fn date_shaped(groups: &[&str], candidate: &str) -> bool {
    if groups.len() < 3 || candidate.starts_with(['+', '(']) {
        return false;
    }
    let value = |g: &str| g.parse::<u32>().unwrap_or(u32::MAX);
    let month_day = |a: &str, b: &str| {
        let (a, b) = (value(a), value(b));
        (1..=12).contains(&a) && (1..=31).contains(&b) || (1..=31).contains(&a) && (1..=12).contains(&b)
    };
    let year = |g: &str| g.len() == 4 && (1900..=2100).contains(&value(g));
    (year(groups[0]) && month_day(groups[1], groups[2])) || (year(groups[2]) && month_day(groups[0], groups[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        scanner().scan(text).into_iter().map(|span| (span.kind, &text[span.range])).collect()
    }

    #[test]
    fn each_kind_is_found_in_a_sentence() {
        let text = "Card 4111 1111 1111 1111, SSN 123-45-6789, mail jo.doe+x@example.co.uk, \
                    call +1 (415) 555-0134 ext. 12, IBAN GB82 WEST 1234 5698 7654 32.";
        assert_eq!(
            kinds(text),
            vec![
                (PiiKind::Card, "4111 1111 1111 1111"),
                (PiiKind::Ssn, "123-45-6789"),
                (PiiKind::Email, "jo.doe+x@example.co.uk"),
                (PiiKind::Phone, "+1 (415) 555-0134 ext. 12"),
                (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
            ]
        );
    }

    #[test]
    fn numbers_that_fail_their_checksum_are_not_cards_or_ibans() {
        assert!(kinds("4111 1111 1111 1112").iter().all(|(kind, _)| *kind != PiiKind::Card));
        assert!(kinds("GB82 WEST 1234 5698 7654 33").iter().all(|(kind, _)| *kind != PiiKind::Iban));
    }

    #[test]
    fn identifiers_dates_and_amounts_are_left_alone() {
        for text in [
            "request 550e8400-e29b-41d4-a716-446655440000 failed",
            "at 2026-12-06T21:34:31.123Z the job ran",
            "Date: 1978-04-13 12:20:39",
            "the total is $1 234 567",
            "pi is 3.14159265 and the host 192.168.10.1",
            "order A-10024 for customer C-1001",
            "it took 1234567 microseconds",
            "1.234.567 units",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn bare_digits_are_a_phone_number_only_when_the_words_say_so() {
        assert_eq!(kinds("call me on 4155550134"), vec![(PiiKind::Phone, "4155550134")]);
        assert_eq!(kinds("4155550134-Fax"), vec![(PiiKind::Phone, "4155550134")]);
        assert_eq!(kinds(r#"{"tracking_number":"4833351328"}"#), vec![]);
    }

    #[test]
    fn bare_nine_digits_are_an_ssn_only_when_called_one() {
        assert_eq!(kinds("my ssn is 123456789"), vec![(PiiKind::Ssn, "123456789")]);
        assert!(kinds("reference 123456789").iter().all(|(kind, _)| *kind != PiiKind::Ssn));
    }

    #[test]
    fn redaction_replaces_only_the_kinds_asked_for() {
        let text = "I paid with 4111111111111111, write to ana@example.com";
        let cards = KindSet::NONE.with(PiiKind::Card);
        assert_eq!(scanner().redact(text, cards), "I paid with [CARD], write to ana@example.com");
        assert_eq!(scanner().redact(text, KindSet::all()), "I paid with [CARD], write to [EMAIL]");
        assert!(matches!(scanner().redact("nothing here", KindSet::all()), Cow::Borrowed(_)));
    }

    #[test]
    fn kind_sets_read_and_write_as_names() {
        let set: KindSet = serde_json::from_str(r#"["card", "email"]"#).expect("a list of names");
        assert!(set.contains(PiiKind::Card) && set.contains(PiiKind::Email) && !set.contains(PiiKind::Phone));
        assert_eq!(serde_json::to_string(&set).expect("serialises"), r#"["email","card"]"#);
        assert!(serde_json::from_str::<KindSet>(r#"["passport"]"#).is_err());
    }
}
