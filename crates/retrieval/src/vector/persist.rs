//! A vector index on disk: one directory holding
//!
//! - `manifest.json`: format name and version, the index configuration, the number of chunks,
//!   and for each data file its name, length and SHA-256;
//! - `graph-<hash>.usearch`: the graph, as usearch serialises it;
//! - `chunks-<hash>.postcard`: every chunk's key and attributes, and with int8 precision its
//!   full-precision vector.
//!
//! Data files are named after a prefix of their hash, so a save writes new files beside the old
//! ones and switches over by renaming the new manifest into place; only then are the files no
//! manifest names deleted. The checksums are checked before usearch parses anything: it trusts
//! its input, and a damaged graph must be an error, not undefined behaviour.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::attributes::Symbols;
use super::config::{Precision, VectorIndexConfig};
use super::error::VectorError;
use super::graph::Graph;
use super::index::{Chunk, State};

/// Bumped whenever a file's layout changes; [`read`] refuses every other version.
pub(crate) const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "concierge-vector-index";
const MANIFEST: &str = "manifest.json";
const GRAPH: (&str, &str) = ("graph", "usearch");
const CHUNKS: (&str, &str) = ("chunks", "postcard");
/// Hex digits of the hash kept in a data file's name.
const NAME_HASH_DIGITS: usize = 16;

/// Just enough of a manifest to refuse another format or version before reading the rest,
/// whose fields may differ there.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    dimensions: usize,
    precision: Precision,
    connectivity: usize,
    ef_construction: usize,
    ef_search: usize,
    rescore_factor: usize,
    chunks: usize,
    graph: DataFile,
    chunk_file: DataFile,
}

#[derive(Serialize, Deserialize)]
struct DataFile {
    name: String,
    bytes: u64,
    sha256: String,
}

/// One chunk as stored: borrowed when writing, owned when read back.
#[derive(Serialize, Deserialize)]
struct StoredChunk<'a> {
    key: u64,
    tenant: Cow<'a, str>,
    metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    exact: Option<Cow<'a, [f32]>>,
}

pub(crate) fn write(dir: &Path, config: &VectorIndexConfig, state: &State) -> Result<(), VectorError> {
    fs::create_dir_all(dir).map_err(|e| VectorError::io(dir, e))?;
    let graph = write_data(dir, GRAPH, &state.graph.to_bytes()?)?;
    let chunks = encode_chunks(state).map_err(|e| VectorError::io(dir, io::Error::other(e)))?;
    let chunk_file = write_data(dir, CHUNKS, &chunks)?;
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        dimensions: config.dimensions,
        precision: config.precision,
        connectivity: config.connectivity,
        ef_construction: config.ef_construction,
        ef_search: config.ef_search,
        rescore_factor: config.rescore_factor,
        chunks: state.chunks.len(),
        graph,
        chunk_file,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| VectorError::io(dir, e.into()))?;
    write_atomically(&dir.join(MANIFEST), &manifest_bytes)?;
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(|e| VectorError::io(dir, e))?;
    remove_unlisted(dir, &manifest)
}

pub(crate) fn read(dir: &Path, max_concurrent_searches: usize) -> Result<(VectorIndexConfig, State), VectorError> {
    if !dir.is_dir() {
        return Err(VectorError::NotFound { path: dir.to_owned(), missing: "directory" });
    }
    let manifest_path = dir.join(MANIFEST);
    let manifest = read_manifest(&manifest_path)?;
    let config = VectorIndexConfig {
        dimensions: manifest.dimensions,
        precision: manifest.precision,
        connectivity: manifest.connectivity,
        ef_construction: manifest.ef_construction,
        ef_search: manifest.ef_search,
        rescore_factor: manifest.rescore_factor,
        max_concurrent_searches,
    };
    if max_concurrent_searches == 0 {
        return Err(VectorError::Config("max_concurrent_searches must be at least 1".into()));
    }
    config.validate().map_err(|e| VectorError::corrupt(&manifest_path, e.to_string()))?;

    let (graph_path, graph_bytes) = read_data(dir, &manifest.graph)?;
    let (chunks_path, chunk_bytes) = read_data(dir, &manifest.chunk_file)?;
    let stored: Vec<StoredChunk<'_>> =
        postcard::from_bytes(&chunk_bytes).map_err(|e| VectorError::corrupt(&chunks_path, e.to_string()))?;
    let graph =
        Graph::from_bytes(&config, &graph_bytes).map_err(|e| VectorError::corrupt(&graph_path, e.to_string()))?;
    let state = rebuild_state(&config, graph, stored).map_err(|reason| VectorError::corrupt(&chunks_path, reason))?;
    if state.chunks.len() != manifest.chunks {
        let reason = format!("manifest lists {} chunks, the files hold {}", manifest.chunks, state.chunks.len());
        return Err(VectorError::corrupt(&manifest_path, reason));
    }
    Ok((config, state))
}

fn encode_chunks(state: &State) -> Result<Vec<u8>, postcard::Error> {
    let name = |symbol| Cow::Borrowed(state.symbols.name(symbol));
    let stored: Vec<StoredChunk<'_>> = state
        .chunks
        .iter()
        .map(|(&key, chunk)| StoredChunk {
            key,
            tenant: name(chunk.attributes.tenant),
            metadata: chunk.attributes.metadata.iter().map(|&(k, v)| (name(k), name(v))).collect(),
            exact: chunk.exact.as_deref().map(Cow::Borrowed),
        })
        .collect();
    postcard::to_stdvec(&stored)
}

/// The in-memory state from the stored chunks and graph, checking that they agree with each
/// other and with the configuration.
fn rebuild_state(config: &VectorIndexConfig, graph: Graph, stored: Vec<StoredChunk<'_>>) -> Result<State, String> {
    if graph.len() != stored.len() {
        return Err(format!("{} chunks but {} vectors in the graph", stored.len(), graph.len()));
    }
    let mut state = State::new(graph, Symbols::default());
    state.chunks.reserve(stored.len());
    for chunk in stored {
        if !state.graph.contains(chunk.key) {
            return Err(format!("chunk {} has no vector in the graph", chunk.key));
        }
        let exact = match (config.precision, chunk.exact) {
            (Precision::Int8, Some(exact)) if exact.len() == config.dimensions => Some(exact.into_owned().into()),
            (Precision::Float32, None) => None,
            _ => return Err(format!("chunk {}: full-precision vector missing or of the wrong length", chunk.key)),
        };
        let metadata = chunk.metadata.iter().map(|(key, value)| (key.as_ref(), value.as_ref()));
        let attributes = state.symbols.encode(&chunk.tenant, metadata);
        if state.insert_chunk(chunk.key, Chunk { attributes, exact }).is_some() {
            return Err(format!("chunk {} stored twice", chunk.key));
        }
    }
    Ok(state)
}

fn read_manifest(path: &Path) -> Result<Manifest, VectorError> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            VectorError::NotFound { path: path.parent().unwrap_or(path).to_owned(), missing: MANIFEST }
        }
        _ => VectorError::io(path, e),
    })?;
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| VectorError::corrupt(path, format!("not a vector index manifest: {e}")))?;
    if header.format != FORMAT_NAME {
        return Err(VectorError::corrupt(path, format!("format {:?}, expected {FORMAT_NAME:?}", header.format)));
    }
    if header.version != FORMAT_VERSION {
        return Err(VectorError::Version { path: path.to_owned(), found: header.version, supported: FORMAT_VERSION });
    }
    serde_json::from_slice(&bytes).map_err(|e| VectorError::corrupt(path, e.to_string()))
}

/// Reads a data file the manifest names, refusing it unless its length and hash match.
fn read_data(dir: &Path, file: &DataFile) -> Result<(PathBuf, Vec<u8>), VectorError> {
    // A manifest names files inside its own directory, never a path elsewhere.
    if Path::new(&file.name).file_name().is_none_or(|name| name != file.name.as_str()) {
        return Err(VectorError::corrupt(dir.join(MANIFEST), format!("data file name {:?}", file.name)));
    }
    let path = dir.join(&file.name);
    let bytes = fs::read(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => VectorError::corrupt(&path, "missing"),
        _ => VectorError::io(&path, e),
    })?;
    if bytes.len() as u64 != file.bytes {
        return Err(VectorError::corrupt(&path, format!("{} bytes, expected {}", bytes.len(), file.bytes)));
    }
    if sha256_hex(&bytes) != file.sha256 {
        return Err(VectorError::corrupt(&path, "checksum does not match the manifest"));
    }
    Ok((path, bytes))
}

fn write_data(dir: &Path, (stem, extension): (&str, &str), bytes: &[u8]) -> Result<DataFile, VectorError> {
    let sha256 = sha256_hex(bytes);
    let name = format!("{stem}-{}.{extension}", &sha256[..NAME_HASH_DIGITS]);
    write_atomically(&dir.join(&name), bytes)?;
    Ok(DataFile { name, bytes: bytes.len() as u64, sha256 })
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, and renames it over
/// `path`: a reader sees the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VectorError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written.map_err(|e| VectorError::io(&temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| VectorError::io(path, e))
}

/// Deletes the data files and leftovers of earlier saves, which `manifest` no longer names.
/// Only names this module writes are touched; anything else in `dir` stays.
fn remove_unlisted(dir: &Path, manifest: &Manifest) -> Result<(), VectorError> {
    let listed = [manifest.graph.name.as_str(), manifest.chunk_file.name.as_str()];
    for entry in fs::read_dir(dir).map_err(|e| VectorError::io(dir, e))? {
        let entry = entry.map_err(|e| VectorError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_data_file_name(name) && !listed.contains(&name) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(VectorError::io(entry.path(), e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether `name` is one [`write_data`] makes (or its temporary), as opposed to a file someone
/// else keeps in the directory.
fn is_data_file_name(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    [GRAPH, CHUNKS].iter().any(|(stem, extension)| {
        name.strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(extension))
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|hash| hash.len() == NAME_HASH_DIGITS && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}
