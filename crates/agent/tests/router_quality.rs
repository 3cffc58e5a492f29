//! The regression floor of routing quality: the Acme intents file, 5-fold cross-validated
//! with the real embedding model and the default router settings, and Acme's out-of-scope
//! messages. The floors sit a little under the figures measured when they were set
//! (bench/README.md "Routing" has those); a change that loses more than that fails here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use concierge_agent::router::datasets::{read_intents, read_out_of_scope};
use concierge_agent::router::eval::cross_validate;
use concierge_agent::RouterConfig;
use concierge_retrieval::embed::Embedder;
use concierge_retrieval::{LocalEmbedder, LocalEmbedderConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn acme_intents_are_recognised_and_unrelated_messages_called_out_of_scope() {
    let models = std::env::var_os("CONCIERGE_MODELS_DIR").map_or_else(|| root().join("models"), PathBuf::from);
    let embedder: Arc<dyn Embedder> = Arc::new(
        LocalEmbedder::load(LocalEmbedderConfig::all_minilm_l6_v2(models))
            .expect("the embedding model (scripts/fetch-models puts it in models/)"),
    );
    let intents = read_intents(&root().join("examples/acme/intents.toml")).unwrap();
    let out_of_scope = read_out_of_scope(&root().join("examples/acme/out_of_scope.txt")).unwrap();
    assert!(out_of_scope.len() >= 40);
    let result =
        cross_validate(&embedder, &intents, &out_of_scope, &RouterConfig::default(), 5, &|_, _, _| {}).await.unwrap();
    let m = &result.metrics;
    println!("{m:?}");
    assert!(m.accuracy >= ACCURACY, "accuracy {:.3} fell below {ACCURACY}", m.accuracy);
    assert!(m.in_scope_accuracy >= IN_SCOPE, "in-scope accuracy {:.3} fell below {IN_SCOPE}", m.in_scope_accuracy);
    let recall = m.out_of_scope_recall.expect("the set has out-of-scope messages");
    assert!(recall >= OUT_OF_SCOPE_RECALL, "out-of-scope recall {recall:.3} fell below {OUT_OF_SCOPE_RECALL}");
    assert!(
        m.calibration_error <= CALIBRATION_ERROR,
        "calibration error {:.3} rose above {CALIBRATION_ERROR}",
        m.calibration_error
    );
}

// Measured 2026-12-01: accuracy 0.818, in-scope accuracy 0.796, out-of-scope recall 0.900,
// calibration error 0.061.
const ACCURACY: f64 = 0.80;
const IN_SCOPE: f64 = 0.77;
const OUT_OF_SCOPE_RECALL: f64 = 0.85;
const CALIBRATION_ERROR: f64 = 0.09;
