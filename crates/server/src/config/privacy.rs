//! `[privacy]`: which kinds of personal data are replaced by a placeholder (`[CARD]`,
//! `[EMAIL]`, …) on each way out of this tenant's process. Kinds: `card`, `ssn`, `iban`,
//! `email`, `phone`, `address`.

use concierge_guard::{KindSet, PiiKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// In every log line. Default: all kinds.
    pub logs: KindSet,
    /// In messages before they are stored, and so in what the agent, its checkpoints,
    /// tickets and the console see. Card numbers are never stored, whether listed or not.
    /// Default: cards, SSNs and IBANs (emails and phone numbers stay: the account tools
    /// look customers up by them).
    pub stored: KindSet,
    /// In what is sent to a model outside the process (OpenAI-compatible or Anthropic
    /// providers; the embedded model is not outside). Default: all kinds. A company whose
    /// articles give phone numbers or addresses for the model to quote lists the others.
    pub remote_models: KindSet,
    /// In what is sent to customers: replies, and the tokens of the model gateway, where a
    /// number split across tokens is still caught. Default: cards, SSNs and IBANs.
    pub replies: KindSet,
}

fn financial() -> KindSet {
    [PiiKind::Card, PiiKind::Ssn, PiiKind::Iban].into_iter().collect()
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { logs: KindSet::all(), stored: financial(), remote_models: KindSet::all(), replies: financial() }
    }
}

impl PrivacyConfig {
    /// What is redacted from a message before it is stored: `stored`, cards always, and
    /// for the agent's replies `replies` too.
    pub fn for_stored(&self, reply: bool) -> KindSet {
        let kinds = self.stored.with(PiiKind::Card);
        if reply {
            self.replies.iter().fold(kinds, KindSet::with)
        } else {
            kinds
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_are_never_stored_whatever_the_list_says() {
        let config: PrivacyConfig = toml::from_str("stored = []").expect("parses");
        assert!(config.for_stored(false).contains(PiiKind::Card));
        assert!(!config.for_stored(false).contains(PiiKind::Ssn));
        assert!(config.for_stored(true).contains(PiiKind::Iban), "replies add their own kinds");
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let error = toml::from_str::<PrivacyConfig>(r#"logs = ["passport"]"#).expect_err("refused");
        assert!(error.to_string().contains("passport"), "{error}");
    }
}
