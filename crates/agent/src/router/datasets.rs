//! Labelled messages for fitting and measuring the router: a company's intents file
//! (`[[intent]]` tables, see `examples/acme/intents.toml`) and two public sets read in their
//! published formats — BANKING77 (`train.csv` and `test.csv`, columns `text` and
//! `category`; Casanueva et al., 2020) and CLINC150 (`data_full.json`: `train`, `val` and
//! `test` lists of `[text, intent]` and `oos_*` lists of out-of-scope messages; Larson et
//! al., 2019).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::IntentSpec;

/// One message and the intent it expresses; `None` when it is out of scope.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledText {
    pub text: String,
    pub intent: Option<String>,
}

/// A data set's parts. `validation` may be empty (BANKING77 has none).
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<LabelledText>,
    pub validation: Vec<LabelledText>,
    pub test: Vec<LabelledText>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Read { path: path.to_owned(), source })
}

/// The `[[intent]]` tables of an intents file.
pub fn read_intents(path: &Path) -> Result<Vec<IntentSpec>, DatasetError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        intent: Vec<IntentSpec>,
    }
    let file: File = toml::from_str(&read(path)?)
        .map_err(|e| DatasetError::Format { path: path.to_owned(), message: e.to_string() })?;
    if let Some(empty) = file.intent.iter().find(|i| i.examples.iter().all(|e| e.trim().is_empty())) {
        return Err(DatasetError::Format {
            path: path.to_owned(),
            message: format!("intent {:?} has no examples", empty.name),
        });
    }
    Ok(file.intent)
}

/// Out-of-scope messages, one per line; blank lines and lines starting with `#` are skipped.
pub fn read_out_of_scope(path: &Path) -> Result<Vec<LabelledText>, DatasetError> {
    Ok(read(path)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| LabelledText { text: line.to_owned(), intent: None })
        .collect())
}

/// BANKING77 from the folder holding its `train.csv` and `test.csv`.
pub fn banking77(dir: &Path) -> Result<Split, DatasetError> {
    #[derive(Deserialize)]
    struct Row {
        text: String,
        category: String,
    }
    let part = |name: &str| -> Result<Vec<LabelledText>, DatasetError> {
        let path = dir.join(name);
        let text = read(&path)?;
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        reader
            .deserialize::<Row>()
            .map(|row| {
                row.map(|r| LabelledText { text: r.text, intent: Some(r.category) })
                    .map_err(|e| DatasetError::Format { path: path.clone(), message: e.to_string() })
            })
            .collect()
    };
    Ok(Split { train: part("train.csv")?, validation: Vec::new(), test: part("test.csv")? })
}

/// CLINC150 from its `data_full.json`; each part keeps its out-of-scope messages (intent
/// `None`).
pub fn clinc150(file: &Path) -> Result<Split, DatasetError> {
    #[derive(Deserialize)]
    struct Full {
        train: Vec<(String, String)>,
        val: Vec<(String, String)>,
        test: Vec<(String, String)>,
        oos_train: Vec<(String, String)>,
        oos_val: Vec<(String, String)>,
        oos_test: Vec<(String, String)>,
    }
    let full: Full = serde_json::from_str(&read(file)?)
        .map_err(|e| DatasetError::Format { path: file.to_owned(), message: e.to_string() })?;
    let join = |in_scope: Vec<(String, String)>, out: Vec<(String, String)>| -> Vec<LabelledText> {
        let in_scope = in_scope.into_iter().map(|(text, intent)| LabelledText { text, intent: Some(intent) });
        in_scope.chain(out.into_iter().map(|(text, _)| LabelledText { text, intent: None })).collect()
    };
    Ok(Split {
        train: join(full.train, full.oos_train),
        validation: join(full.val, full.oos_val),
        test: join(full.test, full.oos_test),
    })
}

/// The in-scope messages grouped into intents, in the order each intent first appears;
/// each intent is its own specialist.
pub fn intents_of(examples: &[LabelledText]) -> Vec<IntentSpec> {
    let mut intents: Vec<IntentSpec> = Vec::new();
    for example in examples {
        let Some(name) = &example.intent else { continue };
        match intents.iter_mut().find(|i| &i.name == name) {
            Some(intent) => intent.examples.push(example.text.clone()),
            None => intents.push(IntentSpec {
                name: name.clone(),
                specialist: name.clone(),
                description: String::new(),
                examples: vec![example.text.clone()],
            }),
        }
    }
    intents
}

/// `per_intent` examples of each intent, drawn by a shuffle seeded with `seed`, so that a
/// few-shot figure can be reproduced exactly.
pub fn few_shot(intents: &[IntentSpec], per_intent: usize, seed: u64) -> Vec<IntentSpec> {
    let mut rng = fastrand::Rng::with_seed(seed);
    intents
        .iter()
        .map(|intent| {
            let mut examples = intent.examples.clone();
            rng.shuffle(&mut examples);
            examples.truncate(per_intent);
            IntentSpec { examples, ..intent.clone() }
        })
        .collect()
}

/// The labelled examples of `intents`, the description left out.
pub fn examples_of(intents: &[IntentSpec]) -> Vec<LabelledText> {
    intents
        .iter()
        .flat_map(|i| i.examples.iter().map(|text| LabelledText { text: text.clone(), intent: Some(i.name.clone()) }))
        .collect()
}

/// `folds` pairs of (intents to fit on, examples to test on): every `folds`-th example of
/// each intent is tested in turn, so each example is tested once, by a router that never
/// saw it.
pub fn cross_validation(intents: &[IntentSpec], folds: usize) -> Vec<(Vec<IntentSpec>, Vec<LabelledText>)> {
    (0..folds)
        .map(|fold| {
            let mut train = Vec::new();
            let mut test = Vec::new();
            for intent in intents {
                let (held, kept): (Vec<_>, Vec<_>) =
                    intent.examples.iter().enumerate().partition(|(i, _)| i % folds == fold);
                test.extend(
                    held.into_iter()
                        .map(|(_, text)| LabelledText { text: text.clone(), intent: Some(intent.name.clone()) }),
                );
                train.push(IntentSpec {
                    examples: kept.into_iter().map(|(_, t)| t.clone()).collect(),
                    ..intent.clone()
                });
            }
            (train, test)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banking77_csv_with_quoted_commas_is_read_and_bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "text,category\n\"How do I know if I will get my card, or if it is lost?\",card_arrival\nhi,greet\n";
        std::fs::write(dir.path().join("train.csv"), csv).unwrap();
        std::fs::write(dir.path().join("test.csv"), "text,category\nwhere is my card,card_arrival\n").unwrap();
        let split = banking77(dir.path()).unwrap();
        assert_eq!(split.train.len(), 2);
        assert_eq!(split.train[0].text, "How do I know if I will get my card, or if it is lost?");
        assert_eq!(split.test[0].intent.as_deref(), Some("card_arrival"));
        std::fs::write(dir.path().join("test.csv"), "text,category\nonly one field\n").unwrap();
        assert!(banking77(dir.path()).unwrap_err().to_string().contains("test.csv"));
    }

    #[test]
    fn clinc150_keeps_out_of_scope_messages_without_an_intent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_full.json");
        let json = r#"{"train":[["a","x"]],"val":[["b","x"]],"test":[["c","y"]],
            "oos_train":[["d","oos"]],"oos_val":[],"oos_test":[["e","oos"]]}"#;
        std::fs::write(&path, json).unwrap();
        let split = clinc150(&path).unwrap();
        assert_eq!(split.train.iter().filter(|e| e.intent.is_none()).count(), 1);
        assert_eq!(split.test[1], LabelledText { text: "e".into(), intent: None });
    }

    #[test]
    fn grouping_few_shot_and_folds_keep_every_intent_and_example_once() {
        let examples: Vec<LabelledText> = (0..12)
            .map(|i| LabelledText { text: format!("m{i}"), intent: Some(format!("i{}", i % 3)) })
            .chain([LabelledText { text: "nothing".into(), intent: None }])
            .collect();
        let intents = intents_of(&examples);
        assert_eq!(intents.iter().map(|i| i.examples.len()).collect::<Vec<_>>(), [4, 4, 4]);
        let few = few_shot(&intents, 2, 7);
        assert!(few.iter().all(|i| i.examples.len() == 2));
        assert_eq!(few, few_shot(&intents, 2, 7));
        let folds = cross_validation(&intents, 2);
        let tested: usize = folds.iter().map(|(_, test)| test.len()).sum();
        assert_eq!(tested, 12);
        assert!(folds.iter().all(|(train, _)| train.iter().all(|i| i.examples.len() == 2)));
    }

    #[test]
    fn out_of_scope_lines_skip_comments_and_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oos.txt");
        std::fs::write(&path, "# about\n\nWho won?\n  Tell me a joke  \n").unwrap();
        let texts: Vec<String> = read_out_of_scope(&path).unwrap().into_iter().map(|t| t.text).collect();
        assert_eq!(texts, ["Who won?", "Tell me a joke"]);
    }

    #[test]
    fn the_acme_intents_file_reads_and_an_intent_without_examples_is_refused() {
        let acme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/intents.toml");
        let intents = read_intents(&acme).unwrap();
        assert!(intents.len() >= 20 && intents.iter().all(|i| i.examples.len() >= 10));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.toml");
        std::fs::write(&path, "[[intent]]\nname = \"a\"\nspecialist = \"s\"\nexamples = []\n").unwrap();
        assert!(read_intents(&path).unwrap_err().to_string().contains("\"a\" has no examples"));
    }
}
