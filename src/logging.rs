//! Logging as `[log]` asks: the level filter, pretty or JSON lines, on stderr, and every line
//! passed through the personal-data scanner before it is written (`[privacy] logs`), so that
//! no log line holds a card number, an email address or a phone number, whichever part of
//! the code (or a dependency) logged it.

use std::io::Write;

use concierge_guard::KindSet;
use concierge_server::config::LogFormat;
use concierge_server::Config;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet_dependencies(&config.log.level)));
    let writer = RedactingWriter { kinds: config.privacy.logs, make: std::io::stderr };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    // A second initialisation (not possible in this binary) would only be ignored.
    let _ = match config.log.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Dependencies that talk a lot at `info`: the search engine logs every index commit, and
/// llama.cpp every key of a model file it loads. Each stays at `warn` unless the filter
/// names it.
const CHATTY_DEPENDENCIES: [&str; 2] = ["tantivy", "llama-cpp-2"];

fn quiet_dependencies(level: &str) -> String {
    let mut filter = level.to_owned();
    for target in CHATTY_DEPENDENCIES.iter().filter(|t| !level.contains(*t)) {
        filter.push_str(&format!(",{target}=warn"));
    }
    filter
}

/// Makes the writers the formatter writes each event with: one writer per event, which
/// collects the formatted line and writes it redacted when the event is done.
struct RedactingWriter<M> {
    kinds: KindSet,
    make: M,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine { kinds: self.kinds, line: Vec::new(), out: self.make.make_writer() }
    }
}

/// One event's formatted text, written redacted to `out` when dropped (or flushed).
struct RedactedLine<W: Write> {
    kinds: KindSet,
    line: Vec<u8>,
    out: W,
}

impl<W: Write> RedactedLine<W> {
    fn write_out(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        let redacted = concierge_guard::scanner().redact(&text, self.kinds);
        self.out.write_all(redacted.as_bytes())
    }
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed write of a log line.
        let _ = self.write_out();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A test double for stderr: what was written, shared.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_logged_event_is_written_redacted() {
        let captured = Captured::default();
        let sink = captured.clone();
        let writer = RedactingWriter { kinds: KindSet::all(), make: move || sink.clone() };
        let subscriber = tracing_subscriber::fmt().json().with_writer(writer).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(customer = "ana@example.com", "card 4111 1111 1111 1111 refused");
        });
        let written = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        assert!(written.contains("[CARD]") && written.contains("[EMAIL]"), "{written}");
        assert!(!written.contains("4111") && !written.contains("ana@"), "{written}");
        assert!(serde_json::from_str::<serde_json::Value>(written.trim()).is_ok(), "still one JSON line: {written}");
    }
}
