//! The vector index, against brute force on clustered sentence-embedding-like vectors.

#[path = "vector/clusters.rs"]
mod clusters;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use clusters::{dot, exact_top_k, recall, ClusteredSpace};
use concierge_core::TenantId;
use concierge_retrieval::{ChunkAttributes, Precision, VectorError, VectorFilter, VectorIndex, VectorIndexConfig};

const DIMENSIONS: usize = 384;
/// As many topics as in the comparison program, so that most of a vector's true neighbours
/// lie outside its own topic: with `ef_search` at half its default, recall here drops below
/// the floor the first test sets.
const CLUSTERS: usize = 300;
const VECTORS: usize = 3_000;
const QUERIES: usize = 100;
const K: usize = 10;

fn tenant(name: &str) -> TenantId {
    name.parse().unwrap()
}

/// A data set and queries from one clustered space.
fn corpus(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut space = ClusteredSpace::new(DIMENSIONS, CLUSTERS, seed);
    (space.samples(VECTORS), space.samples(QUERIES))
}

fn build(
    config: VectorIndexConfig,
    vectors: &[Vec<f32>],
    attributes: impl Fn(usize) -> ChunkAttributes,
) -> VectorIndex {
    let index = VectorIndex::new(config).unwrap();
    for (key, vector) in vectors.iter().enumerate() {
        index.upsert(key as u64, vector, &attributes(key)).unwrap();
    }
    index
}

fn everyone_in(name: &str) -> impl Fn(usize) -> ChunkAttributes {
    let tenant = tenant(name);
    move |_| ChunkAttributes::new(tenant.clone())
}

fn keys(hits: &[(u64, f32)]) -> Vec<u64> {
    hits.iter().map(|&(key, _)| key).collect()
}

/// Mean recall@K of `index` under `filter` against brute force over the vectors `admitted`.
fn mean_recall(
    index: &VectorIndex,
    vectors: &[Vec<f32>],
    queries: &[Vec<f32>],
    filter: &VectorFilter,
    admitted: impl Fn(usize) -> bool,
) -> f64 {
    let total: f64 = queries
        .iter()
        .map(|query| {
            let candidates =
                vectors.iter().enumerate().filter(|(key, _)| admitted(*key)).map(|(key, v)| (key as u64, v.as_slice()));
            let truth = exact_top_k(candidates, query, K);
            recall(&keys(&index.search(query, K, filter).unwrap()), &truth)
        })
        .sum();
    total / queries.len() as f64
}

#[test]
fn default_settings_find_at_least_97_percent_of_the_true_top_10() {
    let (vectors, queries) = corpus(1);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, everyone_in("acme"));

    let recall = mean_recall(&index, &vectors, &queries, &VectorFilter::tenant(tenant("acme")), |_| true);

    assert!(recall >= 0.97, "recall@10 {recall:.3}");
}

#[test]
fn a_tenant_filter_never_returns_another_tenants_chunks_and_fills_k_for_a_tenant_with_1_percent() {
    let (vectors, queries) = corpus(2);
    // Every hundredth chunk is the small tenant's: 30 of 3,000.
    let small = |key: usize| key % 100 == 0;
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, |key| {
        ChunkAttributes::new(tenant(if small(key) { "small" } else { "big" }))
    });
    let filter = VectorFilter::tenant(tenant("small"));

    for query in &queries {
        let hits = index.search(query, K, &filter).unwrap();
        assert_eq!(hits.len(), K, "filtering an unfiltered top 10 afterwards would leave about 0.1 results");
        assert!(hits.iter().all(|&(key, _)| small(key as usize)), "{hits:?}");
    }
    let recall = mean_recall(&index, &vectors, &queries, &filter, small);
    assert!(recall >= 0.97, "recall@10 within the small tenant {recall:.3}");
}

#[test]
fn a_second_tenant_arriving_and_leaving_never_shows_in_the_firsts_results() {
    // With one tenant the walk needs no filter; the moment another tenant's chunk exists it
    // must be filtered again, and when it leaves, the results are what they were.
    let (vectors, queries) = corpus(6);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, everyone_in("acme"));
    let acme = VectorFilter::tenant(tenant("acme"));
    // Upserting a key again within its tenant keeps the counts true.
    index.upsert(3, &vectors[3], &ChunkAttributes::new(tenant("acme"))).unwrap();
    let before: Vec<Vec<(u64, f32)>> = queries.iter().map(|q| index.search(q, K, &acme).unwrap()).collect();

    let intruder = VECTORS as u64 + 1;
    index.upsert(intruder, &queries[0], &ChunkAttributes::new(tenant("globex"))).unwrap();
    let hits = index.search(&queries[0], K, &acme).unwrap();
    assert_eq!(hits.len(), K);
    assert!(hits.iter().all(|&(key, _)| key != intruder), "{hits:?}");
    assert_eq!(keys(&index.search(&queries[0], 1, &VectorFilter::tenant(tenant("globex"))).unwrap()), vec![intruder]);

    assert!(index.remove(intruder).unwrap());
    let after: Vec<Vec<(u64, f32)>> = queries.iter().map(|q| index.search(q, K, &acme).unwrap()).collect();
    // The intruder's insertion re-linked a few of its neighbours, so a result may differ
    // slightly; the tenant's results are otherwise what they were.
    let kept: usize =
        before.iter().zip(&after).map(|(b, a)| keys(a).iter().filter(|key| keys(b).contains(key)).count()).sum();
    assert!(kept as f64 >= 0.95 * (QUERIES * K) as f64, "{kept} of {} results kept", QUERIES * K);
    assert!(after.iter().all(|hits| hits.len() == K && hits.iter().all(|&(key, _)| key != intruder)));
    assert!(index.search(&queries[0], K, &VectorFilter::tenant(tenant("globex"))).unwrap().is_empty());
}

#[test]
fn a_metadata_filter_returns_only_matching_chunks_and_fills_k_when_they_are_rare() {
    let (vectors, queries) = corpus(3);
    let category = |key: usize| if key % 100 == 7 { "billing" } else { "shipping" };
    let product = |key: usize| if key % 2 == 0 { "router" } else { "modem" };
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, |key| {
        ChunkAttributes::new(tenant("acme")).with("category", category(key)).with("product", product(key))
    });
    let billing = VectorFilter::tenant(tenant("acme")).with("category", "billing");
    let billing_modems = billing.clone().with("product", "modem");

    for query in &queries {
        let hits = index.search(query, K, &billing).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|&(key, _)| category(key as usize) == "billing"), "{hits:?}");

        let hits = index.search(query, K, &billing_modems).unwrap();
        assert_eq!(hits.len(), K);
        assert!(hits.iter().all(|&(key, _)| category(key as usize) == "billing" && product(key as usize) == "modem"));
    }
    let recall = mean_recall(&index, &vectors, &queries, &billing, |key| category(key) == "billing");
    assert!(recall >= 0.97, "recall@10 within billing {recall:.3}");

    let absent = VectorFilter::tenant(tenant("acme")).with("category", "returns");
    assert!(index.search(&queries[0], K, &absent).unwrap().is_empty());
}

#[test]
fn a_removed_key_never_comes_back() {
    let (vectors, _) = corpus(4);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, everyone_in("acme"));
    let filter = VectorFilter::tenant(tenant("acme"));
    let removed: HashSet<u64> = (0..VECTORS as u64).step_by(7).collect();

    for &key in &removed {
        assert!(index.remove(key).unwrap());
    }

    assert_eq!(index.len(), VECTORS - removed.len());
    assert!(!index.remove(0).unwrap(), "removing twice reports that nothing was there");
    for &key in removed.iter().take(100) {
        let hits = index.search(&vectors[key as usize], 50, &filter).unwrap();
        assert_eq!(hits.len(), 50);
        assert!(hits.iter().all(|(found, _)| !removed.contains(found)), "key {key} came back: {hits:?}");
    }
}

#[test]
fn an_upserted_key_is_found_with_its_new_vector_and_attributes() {
    let (vectors, queries) = corpus(5);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors, everyone_in("acme"));
    let acme = VectorFilter::tenant(tenant("acme"));
    let key = 42;

    // Queries come from the same space but are not in the index: a fresh vector for key 42.
    index.upsert(key, &queries[0], &ChunkAttributes::new(tenant("acme")).with("category", "billing")).unwrap();

    assert_eq!(index.len(), VECTORS);
    let hits = index.search(&queries[0], K, &acme).unwrap();
    assert_eq!(hits[0].0, key);
    assert!((hits[0].1 - 1.0).abs() < 1e-5, "{hits:?}");
    let old = index.search(&vectors[key as usize], K, &acme).unwrap();
    assert!(old.iter().all(|&(found, score)| found != key || score < 0.99), "the old vector is gone: {old:?}");
    let billing = acme.clone().with("category", "billing");
    assert_eq!(keys(&index.search(&vectors[0], K, &billing).unwrap()), vec![key]);

    index.upsert(key, &queries[0], &ChunkAttributes::new(tenant("globex"))).unwrap();
    assert!(index.search(&queries[0], K, &acme).unwrap().iter().all(|&(found, _)| found != key));
    assert_eq!(keys(&index.search(&queries[0], K, &VectorFilter::tenant(tenant("globex"))).unwrap()), vec![key]);
}

#[test]
fn int8_recall_is_within_a_hundredth_of_float_and_its_scores_are_exact_cosines() {
    let (vectors, queries) = corpus(6);
    let acme = VectorFilter::tenant(tenant("acme"));
    let float = build(VectorIndexConfig::new(DIMENSIONS), &vectors, everyone_in("acme"));
    let int8 = build(VectorIndexConfig::new(DIMENSIONS).with_precision(Precision::Int8), &vectors, everyone_in("acme"));

    let float_recall = mean_recall(&float, &vectors, &queries, &acme, |_| true);
    let int8_recall = mean_recall(&int8, &vectors, &queries, &acme, |_| true);

    assert!(int8_recall >= float_recall - 0.01, "int8 {int8_recall:.3} against float {float_recall:.3}");
    for query in &queries {
        let hits = int8.search(query, K, &acme).unwrap();
        assert!(hits.windows(2).all(|pair| pair[0].1 >= pair[1].1), "sorted, best first");
        for (key, score) in hits {
            let exact = dot(query, &vectors[key as usize]);
            assert!((score - exact).abs() < 1e-5, "key {key}: {score} against exact {exact}");
        }
    }
}

#[test]
fn an_index_opened_from_disk_answers_like_the_one_saved() {
    let (vectors, queries) = corpus(7);
    for precision in [Precision::Float32, Precision::Int8] {
        let config = VectorIndexConfig::new(DIMENSIONS).with_precision(precision);
        let index = build(config.clone(), &vectors, |key| {
            ChunkAttributes::new(tenant(if key % 3 == 0 { "globex" } else { "acme" })).with("category", "billing")
        });
        index.remove(5).unwrap();
        let dir = tempfile::tempdir().unwrap();
        index.save(dir.path()).unwrap();

        let opened = VectorIndex::open_with_concurrency(dir.path(), 2).unwrap();

        assert_eq!(opened.len(), index.len());
        assert_eq!(opened.config().precision, precision);
        assert_eq!(opened.config().dimensions, config.dimensions);
        for filter in
            [VectorFilter::tenant(tenant("acme")), VectorFilter::tenant(tenant("globex")).with("category", "billing")]
        {
            for query in &queries {
                assert_eq!(opened.search(query, K, &filter).unwrap(), index.search(query, K, &filter).unwrap());
            }
        }
        // An opened index takes writes like a new one.
        opened.upsert(5, &queries[0], &ChunkAttributes::new(tenant("acme"))).unwrap();
        assert_eq!(opened.search(&queries[0], 1, &VectorFilter::tenant(tenant("acme"))).unwrap()[0].0, 5);
    }
}

#[test]
fn saving_again_replaces_the_previous_files() {
    let (vectors, _) = corpus(8);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors[..200], everyone_in("acme"));
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "kept").unwrap();

    index.save(dir.path()).unwrap();
    index.remove(0).unwrap();
    index.save(dir.path()).unwrap();

    let mut names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[0].starts_with("chunks-") && names[1].starts_with("graph-"), "{names:?}");
    assert_eq!(&names[2..], ["manifest.json", "notes.txt"]);
    assert_eq!(VectorIndex::open(dir.path()).unwrap().len(), 199);
}

fn saved_index() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (vectors, _) = corpus(9);
    let index = build(VectorIndexConfig::new(DIMENSIONS).with_precision(Precision::Int8), &vectors[..200], |_| {
        ChunkAttributes::new(tenant("acme"))
    });
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path()).unwrap();
    let file = |prefix: &str| {
        fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .unwrap()
    };
    let (graph, chunks) = (file("graph-"), file("chunks-"));
    (dir, graph, chunks)
}

fn open_error(dir: &Path) -> VectorError {
    VectorIndex::open(dir).expect_err("a damaged index must not open")
}

#[test]
fn opening_a_missing_directory_or_manifest_is_a_not_found_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(open_error(&dir.path().join("absent")), VectorError::NotFound { missing: "directory", .. }));
    assert!(matches!(open_error(dir.path()), VectorError::NotFound { missing: "manifest.json", .. }));
}

#[test]
fn opening_a_truncated_or_altered_file_is_a_corrupt_error() {
    let (dir, graph, chunks) = saved_index();
    let original = fs::read(&graph).unwrap();
    fs::write(&graph, &original[..original.len() / 2]).unwrap();
    assert!(matches!(open_error(dir.path()), VectorError::Corrupt { path, .. } if path == graph));

    fs::write(&graph, &original).unwrap();
    let mut altered = fs::read(&chunks).unwrap();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x40;
    fs::write(&chunks, &altered).unwrap();
    assert!(matches!(open_error(dir.path()), VectorError::Corrupt { path, .. } if path == chunks));

    fs::remove_file(&chunks).unwrap();
    assert!(matches!(open_error(dir.path()), VectorError::Corrupt { path, .. } if path == chunks));

    fs::write(dir.path().join("manifest.json"), "{ not json").unwrap();
    assert!(matches!(open_error(dir.path()), VectorError::Corrupt { .. }));
}

#[test]
fn opening_another_format_version_is_a_version_error() {
    let (dir, _, _) = saved_index();
    let manifest_path = dir.path().join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = 2.into();
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let error = open_error(dir.path());

    assert!(matches!(error, VectorError::Version { found: 2, supported: 1, .. }), "{error}");
}

#[test]
fn bad_input_is_a_clear_error_or_an_empty_result_never_a_panic() {
    let (vectors, _) = corpus(10);
    let index = build(VectorIndexConfig::new(DIMENSIONS), &vectors[..100], everyone_in("acme"));
    let acme = VectorFilter::tenant(tenant("acme"));
    let attributes = ChunkAttributes::new(tenant("acme"));
    let mut nan = vectors[0].clone();
    nan[3] = f32::NAN;

    assert!(matches!(
        index.upsert(1, &[0.5; 3], &attributes),
        Err(VectorError::Dimensions { expected: 384, actual: 3 })
    ));
    assert!(matches!(index.search(&[0.5; 3], K, &acme), Err(VectorError::Dimensions { .. })));
    assert!(matches!(index.upsert(1, &nan, &attributes), Err(VectorError::NotFinite { position: 3 })));
    assert!(matches!(index.search(&nan, K, &acme), Err(VectorError::NotFinite { position: 3 })));
    assert!(matches!(
        index.search(&[f32::INFINITY; DIMENSIONS], K, &acme),
        Err(VectorError::NotFinite { position: 0 })
    ));
    assert!(matches!(index.upsert(1, &[0.0; DIMENSIONS], &attributes), Err(VectorError::ZeroVector)));
    assert!(matches!(index.upsert(u64::MAX, &vectors[0], &attributes), Err(VectorError::ReservedKey(_))));
    assert_eq!(index.len(), 100, "refused writes change nothing");

    assert!(index.search(&vectors[0], 0, &acme).unwrap().is_empty());
    assert_eq!(index.search(&vectors[0], 1_000, &acme).unwrap().len(), 100, "k beyond the index gives what there is");
    assert!(index.search(&vectors[0], K, &VectorFilter::tenant(tenant("initech"))).unwrap().is_empty());
    let empty = VectorIndex::new(VectorIndexConfig::new(DIMENSIONS)).unwrap();
    assert!(empty.search(&vectors[0], K, &acme).unwrap().is_empty());

    let mut zero_links = VectorIndexConfig::new(DIMENSIONS);
    zero_links.connectivity = 0;
    assert!(matches!(VectorIndex::new(zero_links), Err(VectorError::Config(_))));
}

#[test]
fn searches_run_alongside_each_other_and_alongside_writes() {
    let (vectors, queries) = corpus(11);
    let mut config = VectorIndexConfig::new(DIMENSIONS);
    // Fewer search contexts than searching threads, so that some searches wait for one.
    config.max_concurrent_searches = 2;
    let index = build(config, &vectors[..1_000], everyone_in("acme"));
    let acme = VectorFilter::tenant(tenant("acme"));

    std::thread::scope(|scope| {
        for worker in 0..6 {
            let (index, acme, queries) = (&index, &acme, &queries);
            scope.spawn(move || {
                for query in queries.iter().skip(worker).step_by(3) {
                    assert_eq!(index.search(query, K, acme).unwrap().len(), K);
                }
            });
        }
        scope.spawn(|| {
            for (key, vector) in vectors.iter().enumerate().skip(1_000).take(500) {
                index.upsert(key as u64, vector, &ChunkAttributes::new(tenant("acme"))).unwrap();
            }
        });
    });

    assert_eq!(index.len(), 1_500);
}
