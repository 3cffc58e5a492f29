//! The detectors measured on labelled text. Personal data: precision and recall per kind,
//! and how much of each labelled value a redaction would cover. Prompt injection: the share
//! of an attack set detected (by technique, by channel) and the share of benign texts
//! wrongly called attacks.
//!
//! The labelled set is read in the format of Presidio's evaluation data (a JSON array of
//! `{full_text, spans: [{entity_type, start_position, end_position}]}`, positions in
//! characters). A finding counts as correct when it overlaps a labelled value of its kind;
//! a labelled value counts as caught when a finding of its kind overlaps it.

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pii::{PiiKind, Scanner};

/// One text and the personal data labelled in it, positions in bytes.
#[derive(Debug, Clone)]
pub struct LabelledText {
    pub text: String,
    pub labels: Vec<(PiiKind, Range<usize>)>,
    /// Labelled values of types this detector does not look for (names, organisations, …).
    pub other_labels: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a labelled set in Presidio's format: {source}")]
    Format { path: String, source: serde_json::Error },
    #[error("{path}, text {index}: a span {start}..{end} lies outside its {chars}-character text")]
    Span { path: String, index: usize, start: usize, end: usize, chars: usize },
}

#[derive(Deserialize)]
struct RawText {
    full_text: String,
    spans: Vec<RawSpan>,
}

#[derive(Deserialize)]
struct RawSpan {
    entity_type: String,
    start_position: usize,
    end_position: usize,
}

/// The kind a Presidio entity type corresponds to, if this detector looks for it.
pub fn kind_of_entity(entity: &str) -> Option<PiiKind> {
    match entity {
        "CREDIT_CARD" => Some(PiiKind::Card),
        "US_SSN" => Some(PiiKind::Ssn),
        "EMAIL_ADDRESS" => Some(PiiKind::Email),
        "PHONE_NUMBER" => Some(PiiKind::Phone),
        "IBAN_CODE" => Some(PiiKind::Iban),
        "STREET_ADDRESS" => Some(PiiKind::Address),
        _ => None,
    }
}

/// Reads a labelled set in Presidio's format.
pub fn read_presidio(path: &Path) -> Result<Vec<LabelledText>, EvalError> {
    let name = path.display().to_string();
    let raw = std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: name.clone(), source })?;
    let texts: Vec<RawText> =
        serde_json::from_str(&raw).map_err(|source| EvalError::Format { path: name.clone(), source })?;
    texts
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            // Positions count characters; the scanner works in bytes.
            let bytes: Vec<usize> =
                raw.full_text.char_indices().map(|(at, _)| at).chain([raw.full_text.len()]).collect();
            let mut labels = Vec::new();
            let mut other_labels = 0;
            for span in raw.spans {
                let (Some(&start), Some(&end)) = (bytes.get(span.start_position), bytes.get(span.end_position)) else {
                    return Err(EvalError::Span {
                        path: name.clone(),
                        index,
                        start: span.start_position,
                        end: span.end_position,
                        chars: bytes.len() - 1,
                    });
                };
                match kind_of_entity(&span.entity_type) {
                    Some(kind) => labels.push((kind, start..end)),
                    None => other_labels += 1,
                }
            }
            Ok(LabelledText { text: raw.full_text, labels, other_labels })
        })
        .collect()
}

/// The figures of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindScore {
    pub kind: PiiKind,
    /// Labelled values of this kind.
    pub labelled: usize,
    /// Findings of this kind.
    pub found: usize,
    /// Labelled values a finding of this kind overlaps.
    pub caught: usize,
    /// Findings that overlap a labelled value of their kind.
    pub correct: usize,
    pub precision: f64,
    pub recall: f64,
    /// The share of the labelled values' characters a redaction (of any kind) replaces.
    pub coverage: f64,
    /// The first values missed and the first wrong findings, to look at.
    pub missed: Vec<String>,
    pub wrong: Vec<String>,
}

/// The figures of a whole set.
#[derive(Debug, Clone, Serialize)]
pub struct PiiReport {
    pub texts: usize,
    pub kinds: Vec<KindScore>,
}

const EXAMPLES: usize = 60;

/// Scans every text and scores the findings against the labels.
pub fn evaluate(scanner: &Scanner, texts: &[LabelledText], mut progress: impl FnMut(usize)) -> PiiReport {
    let mut scores: Vec<KindScore> = PiiKind::ALL
        .into_iter()
        .map(|kind| KindScore {
            kind,
            labelled: 0,
            found: 0,
            caught: 0,
            correct: 0,
            precision: 0.0,
            recall: 0.0,
            coverage: 0.0,
            missed: Vec::new(),
            wrong: Vec::new(),
        })
        .collect();
    let mut covered = vec![(0usize, 0usize); PiiKind::ALL.len()];
    for (done, labelled) in texts.iter().enumerate() {
        let found = scanner.scan(&labelled.text);
        let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
        for (kind, range) in &labelled.labels {
            let score = &mut scores[*kind as usize];
            score.labelled += 1;
            if found.iter().any(|span| span.kind == *kind && overlaps(&span.range, range)) {
                score.caught += 1;
            } else if score.missed.len() < EXAMPLES {
                score.missed.push(in_context(&labelled.text, range.clone()));
            }
            let chars = &mut covered[*kind as usize];
            for (at, c) in labelled.text[range.clone()].char_indices() {
                if c.is_whitespace() {
                    continue;
                }
                chars.1 += 1;
                let at = range.start + at;
                if found.iter().any(|span| span.range.contains(&at)) {
                    chars.0 += 1;
                }
            }
        }
        for span in &found {
            let score = &mut scores[span.kind as usize];
            score.found += 1;
            if labelled.labels.iter().any(|(kind, range)| *kind == span.kind && overlaps(&span.range, range)) {
                score.correct += 1;
            } else if score.wrong.len() < EXAMPLES {
                score.wrong.push(in_context(&labelled.text, span.range.clone()));
            }
        }
        progress(done + 1);
    }
    for (score, (hit, total)) in scores.iter_mut().zip(covered) {
        score.precision = ratio(score.correct, score.found);
        score.recall = ratio(score.caught, score.labelled);
        score.coverage = ratio(hit, total);
    }
    PiiReport { texts: texts.len(), kinds: scores }
}

/// The text at `range` in brackets, with a little of what surrounds it.
fn in_context(text: &str, range: Range<usize>) -> String {
    let mut from = range.start.saturating_sub(24);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (range.end + 24).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    format!("{}[{}]{}", &text[from..range.start], &text[range.clone()], &text[range.end..to]).replace('\n', "⏎")
}

/// `part / whole`, and 1 when there is nothing to measure (no findings, no labels).
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_positions_become_byte_positions() {
        let dir = std::env::temp_dir().join(format!("guard-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let path = dir.join("set.json");
        let set = r#"[{"full_text": "Ærø: call 555-123-4567", "spans": [
            {"entity_type": "PHONE_NUMBER", "start_position": 10, "end_position": 22},
            {"entity_type": "PERSON", "start_position": 0, "end_position": 3}]}]"#;
        std::fs::write(&path, set).expect("written");
        let texts = read_presidio(&path).expect("a labelled set");
        assert_eq!(&texts[0].text[texts[0].labels[0].1.clone()], "555-123-4567");
        assert_eq!(texts[0].other_labels, 1);
        let report = evaluate(&Scanner::new(), &texts, |_| {});
        let phone = &report.kinds[PiiKind::Phone as usize];
        assert_eq!((phone.labelled, phone.caught, phone.found, phone.correct), (1, 1, 1, 1));
        assert_eq!(phone.coverage, 1.0);
    }

    #[test]
    fn a_span_outside_its_text_is_refused() {
        let dir = std::env::temp_dir().join(format!("guard-eval-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let path = dir.join("set.json");
        std::fs::write(&path, r#"[{"full_text": "short", "spans": [{"entity_type": "US_SSN", "start_position": 2, "end_position": 40}]}]"#)
            .expect("written");
        assert!(matches!(read_presidio(&path), Err(EvalError::Span { index: 0, .. })));
    }
}

/// One text of an injection set: an attack or a benign text, how it was made, and where it
/// arrives (`customer`, `passage`, `tool_result`).
#[derive(Debug, Clone, Deserialize)]
pub struct InjectionCase {
    pub text: String,
    pub label: CaseLabel,
    pub technique: String,
    pub channel: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseLabel {
    Attack,
    Benign,
}

/// Reads an injection set: JSON lines of `InjectionCase`.
pub fn read_injection_cases(path: &Path) -> Result<Vec<InjectionCase>, EvalError> {
    let name = path.display().to_string();
    let raw = std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: name.clone(), source })?;
    raw.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|source| EvalError::Format { path: name.clone(), source }))
        .collect()
}

/// Detected of all, for one group of attacks.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub group: String,
    pub attacks: usize,
    pub detected: usize,
    pub rate: f64,
}

/// The detector on an injection set and on messages known to be benign.
#[derive(Debug, Clone, Serialize)]
pub struct InjectionReport {
    pub attacks: usize,
    pub detected: usize,
    pub detection_rate: f64,
    pub by_technique: Vec<Detection>,
    pub by_channel: Vec<Detection>,
    /// The set's own benign texts (written to look like attacks) called attacks.
    pub benign: usize,
    pub benign_flagged: usize,
    pub benign_false_positive_rate: f64,
    /// Messages from elsewhere (BANKING77's test set) called attacks.
    pub public_benign: usize,
    pub public_flagged: usize,
    pub public_false_positive_rate: f64,
    pub missed: Vec<String>,
    pub flagged: Vec<String>,
}

/// Scores `detector` on `cases` and on `public_benign` texts.
pub fn evaluate_injection(
    detector: &crate::InjectionDetector,
    cases: &[InjectionCase],
    public_benign: &[String],
) -> InjectionReport {
    let mut by_technique: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut by_channel: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let (mut missed, mut flagged) = (Vec::new(), Vec::new());
    let (mut attacks, mut detected, mut benign, mut benign_flagged) = (0, 0, 0, 0);
    for case in cases {
        let hit = detector.assess(&case.text).is_attack();
        match case.label {
            CaseLabel::Attack => {
                attacks += 1;
                detected += usize::from(hit);
                for (groups, key) in [(&mut by_technique, &case.technique), (&mut by_channel, &case.channel)] {
                    let entry = groups.entry(key.clone()).or_default();
                    entry.0 += 1;
                    entry.1 += usize::from(hit);
                }
                if !hit {
                    missed.push(case.text.clone());
                }
            }
            CaseLabel::Benign => {
                benign += 1;
                if hit {
                    benign_flagged += 1;
                    flagged.push(case.text.clone());
                }
            }
        }
    }
    let mut public_flagged = 0;
    for text in public_benign {
        if detector.assess(text).is_attack() {
            public_flagged += 1;
            if flagged.len() < 4 * EXAMPLES {
                flagged.push(text.clone());
            }
        }
    }
    let groups = |groups: std::collections::BTreeMap<String, (usize, usize)>| {
        groups
            .into_iter()
            .map(|(group, (attacks, detected))| Detection { group, attacks, detected, rate: ratio(detected, attacks) })
            .collect()
    };
    InjectionReport {
        attacks,
        detected,
        detection_rate: ratio(detected, attacks),
        by_technique: groups(by_technique),
        by_channel: groups(by_channel),
        benign,
        benign_flagged,
        benign_false_positive_rate: 1.0 - ratio(benign - benign_flagged, benign),
        public_benign: public_benign.len(),
        public_flagged,
        public_false_positive_rate: 1.0 - ratio(public_benign.len() - public_flagged, public_benign.len()),
        missed,
        flagged,
    }
}
