//! Which HNSW crate backs `VectorIndex`, decided by measurement: `usearch`, `hnsw_rs` and
//! `instant-distance` on the same clustered, sentence-embedding-like unit vectors, each with a
//! few graph settings, each swept over its search-time `ef` against an exact brute-force top 10.
//! `VectorIndex` itself (float32 and int8 with rescoring, filtering by tenant) is measured too.
//!
//! ```sh
//! cargo run --release -p concierge-retrieval --features ann-comparison --example ann_choice [-- N]
//! ```
//!
//! Builds use two threads where the crate can (usearch from two threads, the other two through
//! rayon); `VectorIndex` inserts one vector at a time, as ingestion does. Queries run on one
//! thread, three passes, the fastest kept. Prints every measurement, then for each setting the
//! smallest `ef` reaching recall@10 of 0.95, 0.97 and 0.99 and its queries per second.

#[path = "../tests/vector/clusters.rs"]
mod clusters;

use std::time::Instant;

use clusters::{exact_top_k, recall, ClusteredSpace};
use concierge_retrieval::{ChunkAttributes, Precision, VectorFilter, VectorIndex, VectorIndexConfig};

const DIMENSIONS: usize = 384;
const CLUSTERS: usize = 300;
const QUERIES: usize = 200;
const K: usize = 10;
const EF_SWEEP: &[usize] = &[10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 192, 256, 384, 512];
/// A sweep stops once recall reaches this: higher `ef` only costs time.
const ENOUGH_RECALL: f64 = 0.998;
const TARGETS: &[f64] = &[0.95, 0.97, 0.99];
const BUILD_THREADS: usize = 2;

/// One candidate index, built, answering top-k queries by position in the data set.
trait Candidate {
    fn set_ef(&mut self, ef: usize);
    fn search(&self, query: &[f32], k: usize) -> Vec<u64>;
}

struct Setting {
    name: String,
    build_seconds: f64,
    /// (ef, recall@10, queries per second)
    sweep: Vec<(usize, f64, f64)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(20_000);
    let mut space = ClusteredSpace::new(DIMENSIONS, CLUSTERS, 7);
    let data = space.samples(n);
    let queries = space.samples(QUERIES);
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|query| exact_top_k(data.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())), query, K))
        .collect();
    println!("{n} vectors, {DIMENSIONS} dimensions, {CLUSTERS} clusters, {QUERIES} queries, recall@{K}\n");

    let mut settings = Vec::new();
    for (m, ef_construction) in [(16, 128), (32, 128), (16, 256)] {
        let (seconds, mut index) = timed(|| usearch_index(&data, m, ef_construction))?;
        settings.push(sweep(format!("usearch M={m} efc={ef_construction}"), seconds, &mut index, &queries, &truth));
    }
    for (m, ef_construction) in [(16, 128), (32, 128), (16, 256)] {
        let (seconds, mut index) = timed(|| Ok(hnsw_rs_index(&data, m, ef_construction)))?;
        settings.push(sweep(format!("hnsw_rs M={m} efc={ef_construction}"), seconds, &mut index, &queries, &truth));
    }
    for ef_construction in [50, 100] {
        let (seconds, mut index) = timed(|| Ok(InstantDistance::build(&data, ef_construction, EF_SWEEP[0])))?;
        let name = format!("instant-distance M=32 efc={ef_construction}");
        settings.push(sweep(name, seconds, &mut index, &queries, &truth));
    }
    for precision in [Precision::Float32, Precision::Int8] {
        let config = VectorIndexConfig::new(DIMENSIONS).with_precision(precision);
        let name =
            format!("VectorIndex {precision:?} M={} efc={} (1 thread)", config.connectivity, config.ef_construction);
        let (seconds, mut index) = timed(|| concierge_index(&data, config))?;
        settings.push(sweep(name, seconds, &mut index, &queries, &truth));
    }
    report(&settings);
    Ok(())
}

fn timed<T>(
    build: impl FnOnce() -> Result<T, Box<dyn std::error::Error>>,
) -> Result<(f64, T), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let built = build()?;
    Ok((start.elapsed().as_secs_f64(), built))
}

fn sweep(
    name: String,
    build_seconds: f64,
    index: &mut dyn Candidate,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
) -> Setting {
    let mut points = Vec::new();
    for &ef in EF_SWEEP {
        index.set_ef(ef);
        let mut best = f64::INFINITY;
        let mut found = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            found = queries.iter().map(|query| index.search(query, K)).collect();
            best = best.min(start.elapsed().as_secs_f64());
        }
        let mean_recall =
            found.iter().zip(truth).map(|(found, truth)| recall(found, truth)).sum::<f64>() / truth.len() as f64;
        let qps = queries.len() as f64 / best;
        println!("{name:<44} ef={ef:<4} recall={mean_recall:.4} qps={qps:>8.0}");
        points.push((ef, mean_recall, qps));
        if mean_recall >= ENOUGH_RECALL {
            break;
        }
    }
    println!("{name:<44} build {build_seconds:.1} s\n");
    Setting { name, build_seconds, sweep: points }
}

fn report(settings: &[Setting]) {
    print!("\n| setting | build s |");
    for target in TARGETS {
        print!(" recall ≥ {target}: ef · recall · QPS |");
    }
    print!("\n|---|---|");
    for _ in TARGETS {
        print!("---|");
    }
    println!();
    for setting in settings {
        print!("| {} | {:.1} |", setting.name, setting.build_seconds);
        for &target in TARGETS {
            match setting.sweep.iter().find(|(_, recall, _)| *recall >= target) {
                Some((ef, recall, qps)) => print!(" {ef} · {recall:.3} · {qps:.0} |"),
                None => print!(" not reached |"),
            }
        }
        println!();
    }
}

struct Usearch(usearch::Index);

fn usearch_index(data: &[Vec<f32>], m: usize, ef_construction: usize) -> Result<Usearch, Box<dyn std::error::Error>> {
    let options = usearch::IndexOptions {
        dimensions: DIMENSIONS,
        metric: usearch::MetricKind::IP,
        quantization: usearch::ScalarKind::F32,
        connectivity: m,
        expansion_add: ef_construction,
        expansion_search: 64,
        multi: false,
    };
    let index = usearch::Index::new(&options)?;
    index.reserve_capacity_and_threads(data.len(), BUILD_THREADS)?;
    let share = data.len().div_ceil(BUILD_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = data
            .chunks(share)
            .enumerate()
            .map(|(part, vectors)| {
                let index = &index;
                scope.spawn(move || -> Result<(), String> {
                    for (i, vector) in vectors.iter().enumerate() {
                        index.add((part * share + i) as u64, vector).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().map_err(|_| "worker panicked".to_owned())?)
    })?;
    Ok(Usearch(index))
}

impl Candidate for Usearch {
    fn set_ef(&mut self, ef: usize) {
        self.0.change_expansion_search(ef);
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<u64> {
        self.0.search(query, k).map(|found| found.keys).unwrap_or_default()
    }
}

struct HnswRs {
    index: hnsw_rs::prelude::Hnsw<'static, f32, hnsw_rs::prelude::DistDot>,
    ef: usize,
}

fn hnsw_rs_index(data: &[Vec<f32>], m: usize, ef_construction: usize) -> HnswRs {
    let mut index = hnsw_rs::prelude::Hnsw::new(m, data.len(), 16, ef_construction, hnsw_rs::prelude::DistDot);
    let items: Vec<(&Vec<f32>, usize)> = data.iter().zip(0..).collect();
    index.parallel_insert(&items);
    index.set_searching_mode(true);
    HnswRs { index, ef: 64 }
}

impl Candidate for HnswRs {
    fn set_ef(&mut self, ef: usize) {
        self.ef = ef;
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<u64> {
        self.index.search(query, k, self.ef.max(k)).iter().map(|found| found.d_id as u64).collect()
    }
}

/// instant-distance fixes `ef` when it builds, so each new `ef` rebuilds (with the same seed and
/// settings); only the first build is timed.
struct InstantDistance {
    data: Vec<Embedding>,
    ef_construction: usize,
    index: instant_distance::Hnsw<Embedding>,
    /// Position in the data set of each of the index's point ids.
    positions: Vec<u64>,
}

#[derive(Clone)]
struct Embedding(Vec<f32>);

impl instant_distance::Point for Embedding {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - chunked_dot(&self.0, &other.0)
    }
}

/// A dot product the compiler can vectorise, so that the pure-Rust crate is not measured on a
/// scalar loop.
fn chunked_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum()
}

impl InstantDistance {
    fn build(data: &[Vec<f32>], ef_construction: usize, ef: usize) -> Self {
        let data: Vec<Embedding> = data.iter().cloned().map(Embedding).collect();
        let (index, positions) = Self::build_hnsw(&data, ef_construction, ef);
        Self { data, ef_construction, index, positions }
    }

    fn build_hnsw(
        data: &[Embedding],
        ef_construction: usize,
        ef: usize,
    ) -> (instant_distance::Hnsw<Embedding>, Vec<u64>) {
        let (index, ids) = instant_distance::Builder::default()
            .ef_construction(ef_construction)
            .ef_search(ef)
            .seed(7)
            .build_hnsw(data.to_vec());
        let mut positions = vec![0; ids.len()];
        for (position, id) in ids.iter().enumerate() {
            positions[id.into_inner() as usize] = position as u64;
        }
        (index, positions)
    }
}

impl Candidate for InstantDistance {
    fn set_ef(&mut self, ef: usize) {
        (self.index, self.positions) = Self::build_hnsw(&self.data, self.ef_construction, ef);
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<u64> {
        let mut search = instant_distance::Search::default();
        let query = Embedding(query.to_vec());
        self.index
            .search(&query, &mut search)
            .take(k)
            .map(|item| self.positions[item.pid.into_inner() as usize])
            .collect()
    }
}

struct Concierge {
    index: VectorIndex,
    filter: VectorFilter,
}

fn concierge_index(data: &[Vec<f32>], config: VectorIndexConfig) -> Result<Concierge, Box<dyn std::error::Error>> {
    let tenant: concierge_core::TenantId = "bench".parse()?;
    let attributes = ChunkAttributes::new(tenant.clone());
    let index = VectorIndex::new(config)?;
    for (key, vector) in data.iter().enumerate() {
        index.upsert(key as u64, vector, &attributes)?;
    }
    Ok(Concierge { index, filter: VectorFilter::tenant(tenant) })
}

impl Candidate for Concierge {
    fn set_ef(&mut self, ef: usize) {
        self.index.set_ef_search(ef);
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<u64> {
        self.index
            .search(query, k, &self.filter)
            .map(|hits| hits.into_iter().map(|(key, _)| key).collect())
            .unwrap_or_default()
    }
}
