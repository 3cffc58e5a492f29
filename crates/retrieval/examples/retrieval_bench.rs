//! The Concierge side of `bench/retrieval`: the vector index and the local embedding model
//! measured through the crate's public API, on the same vectors and texts the Python peers
//! (hnswlib, faiss, sentence-transformers) get. Each subcommand prints one JSON document.
//!
//! ```sh
//! retrieval_bench ann --data DIR --precision float32|int8 [--threads 2] [--ef 10,16,...]
//!                     [--connectivity 16] [--ef-construction 128]
//! retrieval_bench embed --texts bench/retrieval/texts.json --models models [--threads 2] [--batch 64]
//! retrieval_bench texts --kb examples/acme/kb          # writes the embedding workload to stdout
//! retrieval_bench hybrid --data DIR --kb examples/acme/kb
//! ```
//!
//! `bench/retrieval/run` builds this in release mode and drives it; see bench/README.md for
//! what is measured and how the peers are run.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use concierge_core::TenantId;
use concierge_retrieval::{
    chunk_sections, estimate_tokens, load_folder, split_sections, Article, Child, ChunkAttributes, ChunkingConfig,
    Chunks, EmbedError, Embedder, IndexedDocument, KnowledgeBase, LocalEmbedder, LocalEmbedderConfig, Parent,
    Precision, SearchRequest, SearchSettings, StageTimings, VectorFilter, VectorIndex, VectorIndexConfig,
};
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const K: usize = 10;
/// Timed passes over the queries per setting; the fastest is kept (the first warms caches).
const PASSES: usize = 3;
/// A sweep stops once recall@10 reaches this: a larger `ef` only costs time.
const ENOUGH_RECALL: f64 = 0.999;
const DEFAULT_EF_SWEEP: &str = "10,16,20,24,32,40,48,64,80,96,128,160,192,256,384,512";
/// Texts whose vectors are printed, so that the report can compare them with the peer's.
const SAMPLE_VECTORS: usize = 8;

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let report = match args.command.as_str() {
        "ann" => measure_ann(&AnnOptions::from_args(&args)?)?,
        "embed" => measure_embeddings(&args)?,
        "texts" => embedding_workload(&args.path("kb")?)?,
        "hybrid" => measure_hybrid(&args)?,
        other => return Err(format!("unknown command {other:?}; expected ann, embed, texts or hybrid").into()),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ---------------------------------------------------------------- command line

/// A subcommand and its `--name value` options.
struct Args {
    command: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(mut raw: impl Iterator<Item = String>) -> Result<Self> {
        let command = raw.next().ok_or("usage: retrieval_bench ann|embed|texts|hybrid [--name value ...]")?;
        let mut options = HashMap::new();
        while let Some(name) = raw.next() {
            let name = name.strip_prefix("--").ok_or_else(|| format!("expected --name, got {name:?}"))?.to_owned();
            let value = raw.next().ok_or_else(|| format!("--{name} needs a value"))?;
            options.insert(name, value);
        }
        Ok(Self { command, options })
    }

    fn text(&self, name: &str) -> Result<&str> {
        self.options.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required").into())
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        self.text(name).map(PathBuf::from)
    }

    fn number(&self, name: &str, default: usize) -> Result<usize> {
        match self.options.get(name) {
            Some(value) => value.parse().map_err(|e| format!("--{name} {value:?}: {e}").into()),
            None => Ok(default),
        }
    }
}

// ---------------------------------------------------------------- vectors on disk

/// A row-major matrix read from a `.npy` file.
struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T> Matrix<T> {
    fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Reads a two-dimensional little-endian `.npy` array of `descr` (`<f4`, `<i8`) in C order,
/// the only kind `make_vectors.py` writes.
fn read_npy<T, const WIDTH: usize>(path: &Path, descr: &str, decode: fn([u8; WIDTH]) -> T) -> Result<Matrix<T>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |what: &str| format!("{}: {what}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file").into());
    }
    let (header_start, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        _ if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        _ => return Err(bad("truncated header").into()),
    };
    let header = std::str::from_utf8(bytes.get(header_start..header_start + header_len).ok_or_else(|| bad("header"))?)?;
    if !header.contains(&format!("'descr': '{descr}'")) || !header.contains("'fortran_order': False") {
        return Err(bad(&format!("expected a C-order {descr} array, found {header}")).into());
    }
    let shape =
        header.split_once("'shape': (").and_then(|(_, rest)| rest.split_once(')')).ok_or_else(|| bad("shape"))?.0;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!("expected two dimensions, found {shape}")).into());
    };
    let body = &bytes[header_start + header_len..];
    if body.len() != rows * cols * WIDTH {
        return Err(bad("data length does not match the shape").into());
    }
    let data = body.chunks_exact(WIDTH).map(|chunk| decode(chunk.try_into().unwrap_or([0; WIDTH]))).collect();
    Ok(Matrix { rows, cols, data })
}

/// The benchmark's data set: vectors to index, queries, and each query's exact top 10.
struct DataSet {
    base: Matrix<f32>,
    queries: Matrix<f32>,
    truth: Matrix<i64>,
}

impl DataSet {
    fn read(dir: &Path) -> Result<Self> {
        let base = read_npy(&dir.join("base.npy"), "<f4", f32::from_le_bytes)?;
        let queries = read_npy(&dir.join("queries.npy"), "<f4", f32::from_le_bytes)?;
        let truth = read_npy(&dir.join("truth.npy"), "<i8", i64::from_le_bytes)?;
        if queries.cols != base.cols || truth.rows != queries.rows || truth.cols < K {
            return Err(format!("{}: base, queries and truth do not fit together", dir.display()).into());
        }
        Ok(Self { base, queries, truth })
    }

    fn queries(&self) -> Vec<&[f32]> {
        (0..self.queries.rows).map(|i| self.queries.row(i)).collect()
    }

    /// Mean share of each query's exact top 10 that `found` (one key list per query) holds.
    fn recall(&self, found: &[Vec<u64>]) -> f64 {
        let hits: usize = found
            .iter()
            .enumerate()
            .map(|(i, keys)| self.truth.row(i)[..K].iter().filter(|&&t| keys.contains(&(t as u64))).count())
            .sum();
        hits as f64 / (found.len() * K) as f64
    }
}

// ---------------------------------------------------------------- process memory

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------- vector index

struct AnnOptions {
    data: PathBuf,
    precision: Precision,
    threads: usize,
    connectivity: usize,
    ef_construction: usize,
    ef_sweep: Vec<usize>,
}

impl AnnOptions {
    fn from_args(args: &Args) -> Result<Self> {
        let precision = match args.text("precision").unwrap_or("float32") {
            "float32" => Precision::Float32,
            "int8" => Precision::Int8,
            other => return Err(format!("--precision {other:?}: expected float32 or int8").into()),
        };
        let ef_sweep = args
            .options
            .get("ef")
            .map_or(DEFAULT_EF_SWEEP, String::as_str)
            .split(',')
            .map(|ef| ef.trim().parse())
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self {
            data: args.path("data")?,
            precision,
            threads: args.number("threads", 2)?,
            connectivity: args.number("connectivity", VectorIndexConfig::DEFAULT_CONNECTIVITY)?,
            ef_construction: args.number("ef-construction", VectorIndexConfig::DEFAULT_EF_CONSTRUCTION)?,
            ef_sweep,
        })
    }
}

/// Builds a `VectorIndex` over the data set one chunk at a time (as ingestion does; `upsert`
/// takes the index's write lock, so a build uses one thread), then sweeps `ef_search`.
fn measure_ann(options: &AnnOptions) -> Result<Value> {
    let load_before = load_average();
    let data = DataSet::read(&options.data)?;
    let tenant: TenantId = "bench".parse()?;
    let attributes = ChunkAttributes::new(tenant.clone());
    let filter = VectorFilter::tenant(tenant);
    let config = VectorIndexConfig {
        connectivity: options.connectivity,
        ef_construction: options.ef_construction,
        max_concurrent_searches: options.threads,
        ..VectorIndexConfig::new(data.base.cols).with_precision(options.precision)
    };

    let (rss_before, _) = memory_mib();
    let started = Instant::now();
    let index = VectorIndex::new(config.clone())?;
    for i in 0..data.base.rows {
        index.upsert(i as u64, data.base.row(i), &attributes)?;
    }
    let build_s = started.elapsed().as_secs_f64();
    let (rss_after, hwm_after_build) = memory_mib();

    let mut sweep = Vec::new();
    for &ef in &options.ef_sweep {
        index.set_ef_search(ef);
        let mut point = measure_search(&index, &data, &filter, options.threads)?;
        point["ef"] = json!(ef);
        eprintln!(
            "concierge {:?} ef={ef:<4} recall={:.4} qps(1)={:>7.0} qps({})={:>7.0} p50={:.0}us p99={:.0}us",
            options.precision,
            point["recall"].as_f64().unwrap_or(0.0),
            point["qps_1_thread"].as_f64().unwrap_or(0.0),
            options.threads,
            point["qps_threads"].as_f64().unwrap_or(0.0),
            point["p50_us"].as_f64().unwrap_or(0.0),
            point["p99_us"].as_f64().unwrap_or(0.0),
        );
        let reached = point["recall"].as_f64().unwrap_or(0.0) >= ENOUGH_RECALL;
        sweep.push(point);
        if reached {
            break;
        }
    }
    let persistence = measure_persistence(&index, &data, &filter)?;

    Ok(json!({
        "engine": "concierge",
        "library": format!("concierge-retrieval VectorIndex (usearch), {:?}", options.precision),
        "precision": format!("{:?}", options.precision).to_lowercase(),
        "n": data.base.rows,
        "queries": data.queries.rows,
        "dimensions": data.base.cols,
        "connectivity": config.connectivity,
        "ef_construction": config.ef_construction,
        "rescore_factor": config.rescore_factor,
        "threads": options.threads,
        "build_threads": 1,
        "build_s": build_s,
        "rss_before_build_mib": rss_before,
        "rss_after_build_mib": rss_after,
        "index_mib": rss_after - rss_before,
        "peak_rss_mib": memory_mib().1.max(hwm_after_build),
        "sweep": sweep,
        "persistence": persistence,
        "load_before": load_before,
        "load_after": load_average(),
    }))
}

/// Recall@10, single-thread QPS with per-query latency, and QPS with the queries split over
/// `threads` threads, at the index's current `ef_search`. Best of [`PASSES`] passes each.
fn measure_search(index: &VectorIndex, data: &DataSet, filter: &VectorFilter, threads: usize) -> Result<Value> {
    let queries = data.queries();
    let mut best_s = f64::INFINITY;
    let mut best_latencies = Vec::new();
    let mut found = Vec::new();
    for _ in 0..PASSES {
        let mut latencies = Vec::with_capacity(queries.len());
        let mut keys = Vec::with_capacity(queries.len());
        let pass = Instant::now();
        for query in &queries {
            let started = Instant::now();
            let hits = index.search(query, K, filter)?;
            latencies.push(started.elapsed().as_secs_f64());
            keys.push(hits.into_iter().map(|(key, _)| key).collect::<Vec<_>>());
        }
        let elapsed = pass.elapsed().as_secs_f64();
        if elapsed < best_s {
            best_s = elapsed;
            best_latencies = latencies;
        }
        found = keys;
    }
    best_latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| best_latencies[((best_latencies.len() - 1) as f64 * p).round() as usize] * 1e6;

    let mut best_parallel_s = f64::INFINITY;
    for _ in 0..PASSES {
        best_parallel_s = best_parallel_s.min(search_in_parallel(index, &queries, filter, threads)?);
    }
    Ok(json!({
        "recall": data.recall(&found),
        "qps_1_thread": queries.len() as f64 / best_s,
        "qps_threads": queries.len() as f64 / best_parallel_s,
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
    }))
}

/// Seconds to answer every query with the queries split into `threads` contiguous parts, one
/// thread each, all searching the one shared index.
fn search_in_parallel(index: &VectorIndex, queries: &[&[f32]], filter: &VectorFilter, threads: usize) -> Result<f64> {
    let part = queries.len().div_ceil(threads.max(1));
    let started = Instant::now();
    let outcome: std::result::Result<(), String> = std::thread::scope(|scope| {
        let workers: Vec<_> = queries
            .chunks(part)
            .map(|part| scope.spawn(move || part.iter().try_for_each(|query| index.search(query, K, filter).map(drop))))
            .collect();
        workers.into_iter().try_for_each(|worker| match worker.join() {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("a search thread panicked".to_owned()),
        })
    });
    outcome?;
    Ok(started.elapsed().as_secs_f64())
}

/// Save, size on disk, open, and a check that the opened index answers as the saved one did.
fn measure_persistence(index: &VectorIndex, data: &DataSet, filter: &VectorFilter) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    index.save(dir.path())?;
    let save_s = started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(dir.path())?.map(|entry| Ok(entry?.metadata()?.len())).sum::<Result<u64>>()?;
    let started = Instant::now();
    let opened = VectorIndex::open_with_concurrency(dir.path(), index.config().max_concurrent_searches)?;
    let open_s = started.elapsed().as_secs_f64();
    // The opened index keeps the ef_search it was created with; compare at that one.
    index.set_ef_search(index.config().ef_search);
    let same = data.queries().iter().take(20).try_fold(true, |same, query| -> Result<bool> {
        Ok(same && index.search(query, K, filter)? == opened.search(query, K, filter)?)
    })?;
    Ok(json!({ "save_s": save_s, "open_s": open_s, "disk_mib": bytes as f64 / 1048576.0, "same_answers": same }))
}

// ---------------------------------------------------------------- embeddings

/// Sentences per second of the local model on each workload of `--texts`, in batches of
/// `--batch` texts, on `--threads` threads: one warm-up batch, then the whole workload
/// twice, the faster pass kept. The batches are the ones the peer gets, in the same order.
fn measure_embeddings(args: &Args) -> Result<Value> {
    let load_before = load_average();
    let texts: Value = serde_json::from_str(&std::fs::read_to_string(args.path("texts")?)?)?;
    let threads = args.number("threads", 2)?;
    let batch = args.number("batch", 64)?;
    let config = LocalEmbedderConfig { threads, ..LocalEmbedderConfig::all_minilm_l6_v2(args.path("models")?) };
    let started = Instant::now();
    let model = LocalEmbedder::load(config)?;
    let load_s = started.elapsed().as_secs_f64();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let mut workloads = serde_json::Map::new();
    for name in ["questions", "passages"] {
        let items: Vec<&str> =
            texts[name].as_array().ok_or(format!("texts has no {name}"))?.iter().filter_map(Value::as_str).collect();
        let measured = runtime.block_on(embed_workload(&model, &items, batch))?;
        eprintln!("concierge embed {name}: {:.1} texts/s", measured["texts_per_s"].as_f64().unwrap_or(0.0));
        workloads.insert(name.to_owned(), measured);
    }
    Ok(json!({
        "engine": "concierge",
        "library": "concierge-retrieval LocalEmbedder (candle)",
        "model": model.id(),
        "threads": threads,
        "batch": batch,
        "load_s": load_s,
        "workloads": workloads,
        "peak_rss_mib": memory_mib().1,
        "load_before": load_before,
        "load_after": load_average(),
    }))
}

async fn embed_workload(model: &LocalEmbedder, texts: &[&str], batch: usize) -> Result<Value> {
    let batches: Vec<&[&str]> = texts.chunks(batch.max(1)).collect();
    let mut sample = Vec::new();
    if let Some(first) = batches.first() {
        sample = model.embed(first).await?;
    }
    let mut passes = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        for batch in &batches {
            model.embed(batch).await?;
        }
        passes.push(started.elapsed().as_secs_f64());
    }
    let best = passes.iter().copied().fold(f64::INFINITY, f64::min);
    let tokens: usize =
        texts.iter().map(|text| model.token_ids(text).map(|ids| ids.len())).sum::<std::result::Result<_, _>>()?;
    sample.truncate(SAMPLE_VECTORS);
    Ok(json!({
        "texts": texts.len(),
        "mean_tokens": tokens as f64 / texts.len().max(1) as f64,
        "passes_s": passes,
        "texts_per_s": texts.len() as f64 / best,
        "sample_vectors": sample,
    }))
}

/// The embedding workload both sides embed: `questions`, 2,000 short support questions
/// (templates filled in, shuffled with a fixed seed), and `passages`, the children the
/// default chunker cuts from the help-centre articles in `kb` (what ingestion embeds).
fn embedding_workload(kb: &Path) -> Result<Value> {
    let articles = load_folder(kb)?;
    // Headed by title and section, as the knowledge base embeds a child.
    let passages: Vec<String> = articles
        .iter()
        .flat_map(|article| {
            let chunks = chunk_sections(&split_sections(article), &ChunkingConfig::default(), &estimate_tokens);
            chunks
                .children
                .iter()
                .map(|child| match chunks.parents.get(child.parent).map(|p| p.heading.as_str()) {
                    Some(heading) if !heading.is_empty() && heading != article.title => {
                        format!("{} — {heading}\n{}", article.title, child.text)
                    }
                    _ => format!("{}\n{}", article.title, child.text),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(json!({
        "source": format!("retrieval_bench texts --kb {}", kb.display()),
        "questions": support_questions(2_000),
        "passages": passages,
    }))
}

fn support_questions(count: usize) -> Vec<String> {
    const OPENINGS: [&str; 5] = ["", "Hi, ", "Hello. ", "Quick question: ", "Sorry to bother you, but "];
    const PRODUCTS: [&str; 16] = [
        "kettle",
        "coffee grinder",
        "smart hub",
        "router",
        "blender",
        "air purifier",
        "robot vacuum",
        "desk lamp",
        "espresso machine",
        "toaster",
        "headphones",
        "phone case",
        "water filter",
        "space heater",
        "baby monitor",
        "e-reader",
    ];
    const TEMPLATES: [&str; 25] = [
        "How do I reset my {p}?",
        "My {p} stopped working after two weeks, can I get a replacement?",
        "Where is my order with the {p}? It was due yesterday.",
        "I was charged twice for the {p}.",
        "Can I return the {p} if I already opened the box?",
        "Is there a warranty on the {p} and how do I claim it?",
        "The {p} arrived damaged, what should I do?",
        "How long does a refund for the {p} take to reach my card?",
        "Can I change the delivery address for my {p} order?",
        "Do you ship the {p} to Norway, and what does it cost?",
        "My discount code does not work for the {p}.",
        "The {p} makes a loud noise when I switch it on.",
        "How do I pair the {p} with my phone?",
        "I ordered the wrong colour of {p}; can I exchange it?",
        "Will the {p} be back in stock soon?",
        "Can I cancel the {p} order before it ships?",
        "The app says my {p} is offline even though the light is green.",
        "Is the {p} compatible with 110 V outlets?",
        "I never got a confirmation email for the {p}.",
        "Can I pay for the {p} in instalments?",
        "What is the difference between the two {p} models?",
        "The battery of my {p} drains overnight.",
        "Do I need an account to register my {p} for the warranty?",
        "My {p} was delivered to a neighbour and I cannot find it.",
        "How do I clean the filter of the {p}?",
    ];
    let mut all: Vec<String> = OPENINGS
        .iter()
        .flat_map(|opening| {
            TEMPLATES.iter().flat_map(move |template| {
                PRODUCTS.iter().map(move |product| {
                    let question = template.replace("{p}", product);
                    // "Hi, how do I…", not "Hi, How do I…".
                    if opening.ends_with(", ") || opening.ends_with("but ") {
                        format!("{opening}{}{}", question[..1].to_lowercase(), &question[1..])
                    } else {
                        format!("{opening}{question}")
                    }
                })
            })
        })
        .collect();
    fastrand::Rng::with_seed(7).shuffle(&mut all);
    all.truncate(count);
    all
}

// ---------------------------------------------------------------- hybrid search

/// Children per synthetic document, and per parent within one.
const CHILDREN_PER_DOCUMENT: usize = 100;
const CHILDREN_PER_PARENT: usize = 5;
/// Words each topic owns, drawn from the help centre's vocabulary.
const TOPIC_WORDS: usize = 12;

/// Hybrid query latency: BM25 and vector search over the data set's chunks, fused (RRF) and
/// diversified (MMR) by `KnowledgeBase::search_with_vector` with its default settings, the
/// query vector given (query embedding excluded), one query at a time; p50 and p99 over the
/// benchmark's queries, and each stage's share. Target: p50 ≤ 2 ms.
///
/// Every chunk gets a vector of the data set and a text drawn from its vector's topic: runs of
/// words from the help-centre articles in `--kb` (so term frequencies are those of real help
/// text) with a few of the topic's own words mixed in; each query, a short question from its
/// topic's words and a run of help-centre words. Keywords and vectors thus agree about topics
/// the way they do on real chunks, and BM25 walks posting lists of realistic lengths. Chunks
/// are grouped by topic into documents of up to 100 children (5 per parent), one tenant.
fn measure_hybrid(args: &Args) -> Result<Value> {
    let load_before = load_average();
    let data = DataSet::read(&args.path("data")?)?;
    let dir = args.path("data")?;
    let base_topics = read_npy(&dir.join("base_topics.npy"), "<i8", i64::from_le_bytes)?;
    let query_topics = read_npy(&dir.join("query_topics.npy"), "<i8", i64::from_le_bytes)?;
    let words = HelpCentreWords::read(&args.path("kb")?)?;
    let tenant: TenantId = "bench".parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let settings = SearchSettings::default();
    let vectors = VectorIndexConfig::new(data.base.cols);
    let embedder = Arc::new(PrecomputedVectors { dimension: data.base.cols });
    let kb = KnowledgeBase::new(embedder, ChunkingConfig::default(), settings.clone(), vectors)?;

    let (rss_before, _) = memory_mib();
    let started = Instant::now();
    for document in synthetic_documents(&data.base, &base_topics, &words) {
        kb.insert(&tenant, document)?;
    }
    let build_s = started.elapsed().as_secs_f64();
    let (rss_after, _) = memory_mib();

    let requests: Vec<SearchRequest> = (0..data.queries.rows)
        .map(|i| SearchRequest::new(tenant.clone(), words.question(query_topics.row(i)[0], i as u64)))
        .collect();
    // The first pass warms caches; the second is the one reported.
    let mut timings = Vec::new();
    for _ in 0..2 {
        timings = runtime.block_on(time_searches(&kb, &requests, &data))?;
    }
    let (mut total, stages): (Vec<f64>, Vec<StageTimings>) = timings.into_iter().unzip();
    total.sort_by(f64::total_cmp);
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let percentile = |p: f64| total.get(((total.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0);
    let stage_medians = json!({
        "bm25_ms": median(stages.iter().map(|t| t.bm25_ms).collect()),
        "vector_ms": median(stages.iter().map(|t| t.vector_ms).collect()),
        "fusion_ms": median(stages.iter().map(|t| t.fusion_ms).collect()),
    });
    Ok(json!({
        "engine": "concierge",
        "status": "measured",
        "library": "concierge-retrieval KnowledgeBase::search_with_vector (BM25 + VectorIndex float32, weighted fusion, MMR)",
        "chunks": kb.len(),
        "queries": requests.len(),
        "settings": serde_json::to_value(&settings)?,
        "build_s": build_s,
        "memory_mib": rss_after - rss_before,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "mean_ms": total.iter().sum::<f64>() / total.len().max(1) as f64,
        "stage_medians": stage_medians,
        "peak_rss_mib": memory_mib().1,
        "load_before": load_before,
        "load_after": load_average(),
    }))
}

/// Wall-clock milliseconds of each request's hybrid search (with its query vector given), and
/// the stage timings the knowledge base reports for it.
async fn time_searches(
    kb: &KnowledgeBase,
    requests: &[SearchRequest],
    data: &DataSet,
) -> Result<Vec<(f64, StageTimings)>> {
    let mut timings = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let started = Instant::now();
        let results = kb.search_with_vector(request, Some(data.queries.row(i))).await?;
        timings.push((started.elapsed().as_secs_f64() * 1000.0, results.timings));
    }
    Ok(timings)
}

/// The documents of the hybrid benchmark: the data set's vectors grouped by topic, each with a
/// text from its topic.
fn synthetic_documents<'a>(
    base: &'a Matrix<f32>,
    topics: &Matrix<i64>,
    words: &'a HelpCentreWords,
) -> impl Iterator<Item = IndexedDocument> + 'a {
    let mut by_topic: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
    for row in 0..base.rows {
        by_topic.entry(topics.row(row)[0]).or_default().push(row);
    }
    by_topic.into_iter().flat_map(move |(topic, rows)| {
        let rows: Vec<Vec<usize>> = rows.chunks(CHILDREN_PER_DOCUMENT).map(<[usize]>::to_vec).collect();
        rows.into_iter().enumerate().map(move |(number, rows)| words.document(topic, number, &rows, base))
    })
}

/// A model that is never asked: the hybrid benchmark gives every vector precomputed, and a
/// knowledge base only needs its embedder's dimension to check the vector index against.
struct PrecomputedVectors {
    dimension: usize,
}

#[async_trait::async_trait]
impl Embedder for PrecomputedVectors {
    fn id(&self) -> &str {
        "bench/precomputed"
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, _texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Config("the retrieval benchmark gives every vector precomputed".into()))
    }
}

/// The words of the help-centre articles, in order, to draw realistic text from.
struct HelpCentreWords {
    stream: Vec<String>,
    vocabulary: Vec<String>,
}

impl HelpCentreWords {
    fn read(kb: &Path) -> Result<Self> {
        let stream: Vec<String> = load_folder(kb)?
            .iter()
            .flat_map(|article| {
                article
                    .body
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut vocabulary: Vec<String> = stream.iter().filter(|w| w.len() >= 4).cloned().collect();
        vocabulary.sort();
        vocabulary.dedup();
        if stream.len() < 100 || vocabulary.len() < TOPIC_WORDS {
            return Err(format!("{}: too little text to draw chunks from", kb.display()).into());
        }
        Ok(Self { stream, vocabulary })
    }

    fn topic_words(&self, topic: i64) -> Vec<&str> {
        let mut rng = fastrand::Rng::with_seed(topic as u64 ^ 0x5eed);
        (0..TOPIC_WORDS).map(|_| self.vocabulary[rng.usize(..self.vocabulary.len())].as_str()).collect()
    }

    /// `count` consecutive words from a random place in the help centre.
    fn run(&self, rng: &mut fastrand::Rng, count: usize) -> String {
        let start = rng.usize(..self.stream.len() - count);
        self.stream[start..start + count].join(" ")
    }

    /// About 110 words: ten runs of eight help-centre words, each followed by three topic words.
    fn chunk_text(&self, topic: &[&str], rng: &mut fastrand::Rng) -> String {
        let mut text = String::new();
        for _ in 0..10 {
            text.push_str(&self.run(rng, 8));
            for _ in 0..3 {
                text.push(' ');
                text.push_str(topic[rng.usize(..topic.len())]);
            }
            text.push_str(". ");
        }
        text
    }

    /// A question of about ten words: four of its topic's and a run of help-centre words.
    fn question(&self, topic: i64, seed: u64) -> String {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9);
        let words = self.topic_words(topic);
        let own: Vec<&str> = (0..4).map(|_| words[rng.usize(..words.len())]).collect();
        format!("How do I {} {} with {} {}, {}?", own[0], own[1], own[2], own[3], self.run(&mut rng, 5))
    }

    fn document(&self, topic: i64, number: usize, rows: &[usize], base: &Matrix<f32>) -> IndexedDocument {
        let words = self.topic_words(topic);
        let mut rng = fastrand::Rng::with_seed(((topic as u64) << 20) ^ number as u64);
        let title = format!("{} {} {}", words[0], words[1], words[2]);
        let children: Vec<Child> = rows
            .iter()
            .enumerate()
            .map(|(ordinal, _)| {
                let text = self.chunk_text(&words, &mut rng);
                Child { ordinal, parent: ordinal / CHILDREN_PER_PARENT, tokens: estimate_tokens(&text), text }
            })
            .collect();
        let parents: Vec<Parent> = children
            .chunks(CHILDREN_PER_PARENT)
            .enumerate()
            .map(|(ordinal, children)| {
                let text = children.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join("\n\n");
                let heading = format!("{} {}", words[(ordinal + 3) % TOPIC_WORDS], words[(ordinal + 4) % TOPIC_WORDS]);
                Parent { ordinal, heading, tokens: estimate_tokens(&text), text }
            })
            .collect();
        let body = parents.iter().map(|p| format!("## {}\n\n{}", p.heading, p.text)).collect::<Vec<_>>().join("\n\n");
        let article = Article {
            id: format!("topic-{topic}-{number}"),
            title,
            category: format!("category-{}", topic % 20),
            product: None,
            url: None,
            updated: None,
            body,
        };
        let vectors = rows.iter().map(|&row| base.row(row).to_vec()).collect();
        IndexedDocument { article, revision: "bench".into(), chunks: Chunks { parents, children }, vectors }
    }
}
