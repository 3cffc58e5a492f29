//! Customer-supplied text, validated once at the edge.

use serde::{Deserialize, Serialize};

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the message is empty")]
    Empty,
    #[error("the message has {chars} characters; the limit is {limit}")]
    TooLong { chars: usize, limit: usize },
    #[error("the message contains control characters")]
    ControlCharacters,
}

/// The text of a customer message: not blank, at most `limit` characters, and free of
/// control characters other than newline and tab (a NUL byte would be truncated silently
/// by some stores and terminals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// Validates `text` against a character limit. Leading and trailing whitespace is trimmed.
    pub fn parse(text: &str, limit: usize) -> Result<Self, TextError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(TextError::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > limit {
            return Err(TextError::TooLong { chars, limit });
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(TextError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_is_trimmed_and_bounded() {
        assert_eq!(MessageText::parse("  hi \n", 10).unwrap().as_str(), "hi");
        assert_eq!(MessageText::parse(" \n\t ", 10), Err(TextError::Empty));
        assert_eq!(MessageText::parse("ééééé", 4), Err(TextError::TooLong { chars: 5, limit: 4 }));
        assert_eq!(MessageText::parse("a\0b", 10), Err(TextError::ControlCharacters));
        assert!(MessageText::parse("line one\nline two\ttab", 100).is_ok());
    }
}
