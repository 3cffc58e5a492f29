//! The detector on Presidio's labelled synthetic set, held to the targets: recall ≥ 0.99 and
//! precision ≥ 0.95 for cards, SSNs, emails, phone numbers and IBANs. The set is read from
//! `CONCIERGE_EVAL_DATA` (a folder holding `presidio/synth_dataset_v2.json`), by default the
//! `shared/data` folder beside the repository; where it is absent the test says so and
//! checks nothing else.

use std::path::PathBuf;

use concierge_guard::eval::{evaluate, read_presidio};
use concierge_guard::{PiiKind, Scanner};

fn data_set() -> Option<PathBuf> {
    let dir = std::env::var_os("CONCIERGE_EVAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let file = dir.join("presidio/synth_dataset_v2.json");
    file.is_file().then_some(file)
}

#[test]
fn presidio_set_meets_the_targets_for_checkable_kinds() {
    let Some(file) = data_set() else {
        eprintln!("SKIPPED: the Presidio set is not here (set CONCIERGE_EVAL_DATA to the folder holding presidio/)");
        return;
    };
    let texts = read_presidio(&file).expect("the Presidio set reads");
    assert_eq!(texts.len(), 1500);
    let report = evaluate(&Scanner::new(), &texts, |_| {});
    for score in &report.kinds {
        eprintln!(
            "{:8} labelled {:4} found {:4} precision {:.3} recall {:.3} coverage {:.3} missed {:?} wrong {:?}",
            score.kind.name(),
            score.labelled,
            score.found,
            score.precision,
            score.recall,
            score.coverage,
            score.missed,
            score.wrong
        );
    }
    for score in report.kinds.iter().filter(|score| score.kind != PiiKind::Address) {
        assert!(score.recall >= 0.99, "{} recall {:.3}", score.kind, score.recall);
        assert!(score.precision >= 0.95, "{} precision {:.3}", score.kind, score.precision);
    }
}
