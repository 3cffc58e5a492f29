use std::io;
use std::path::PathBuf;

/// Everything a vector index can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("invalid vector index configuration: {0}")]
    Config(String),
    #[error("vector has {actual} dimensions; this index holds {expected}")]
    Dimensions { expected: usize, actual: usize },
    #[error("vector value at position {position} is not a finite number")]
    NotFinite { position: usize },
    #[error("vector is all zeros, so it has no direction to compare")]
    ZeroVector,
    #[error("key {0} is reserved by the index and cannot name a chunk")]
    ReservedKey(u64),
    /// The graph library reported a failure (allocation, for instance).
    #[error("vector graph: {0}")]
    Graph(String),
    #[error("no vector index at {path} (missing {missing})")]
    NotFound { path: PathBuf, missing: &'static str },
    #[error("{path}: vector index format version {found}; this build reads version {supported}")]
    Version { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: damaged vector index file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl VectorError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.into(), reason: reason.into() }
    }
}
