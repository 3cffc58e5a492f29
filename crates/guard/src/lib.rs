//! Guardrails over text, as pure functions: personal data found and replaced by placeholders
//! (`pii`), also in a stream of tokens where a number may arrive in pieces (`stream`), and the
//! detector measured on a labelled set (`eval`); prompt injection recognised in what
//! customers, documents and backends say, and untrusted text fenced for prompts
//! (`injection`); a model's answer checked for what it must not say (`output`).
//!
//! The detectors are written here rather than taken from a library: what they must catch is
//! what customers type into a support chat (national phone formats of any country, card
//! numbers with or without spaces, IBANs in lower case), each confirmed by its checksum where
//! one exists (Luhn, ISO 7064 mod 97), and they must be cheap enough to run over every log
//! line. Phone-number libraries validate against one region's numbering plan at a time and
//! refuse much of what people actually write.
//!
//! **Invariant:** no I/O and no allocation beyond the text handled; a scan never panics,
//! whatever the input.

pub mod eval;
pub mod injection;
pub mod output;
pub mod pii;
pub mod stream;

pub use injection::{detector, fence, Assessment, InjectionDetector, FENCE_RULE};
pub use output::{check_answer, Blocked, OutputRules};
pub use pii::{scanner, KindSet, PiiKind, PiiSpan, Scanner};
pub use stream::StreamRedactor;
