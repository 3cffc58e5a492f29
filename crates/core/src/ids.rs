//! Typed identifiers. A `ConversationId` can never be passed where a `TicketId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An identifier that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7), so ids sort by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| ParseIdError { kind: $kind, value: s.chars().take(64).collect() })
            }
        }
    };
}

uuid_id!(
    /// One conversation between a customer and Concierge.
    ConversationId, "conversation"
);
uuid_id!(
    /// One stored message.
    MessageId, "message"
);
uuid_id!(
    /// A ticket handed to a human.
    TicketId, "ticket"
);
uuid_id!(
    /// A pending or decided human approval of a risky tool call.
    ApprovalId, "approval"
);
uuid_id!(
    /// An asynchronous job.
    JobId, "job"
);
uuid_id!(
    /// A knowledge-base document.
    DocumentId, "document"
);

/// A tenant: one company served by this Concierge. Lowercase letters, digits, `-` and `_`,
/// 1 to 64 characters, so it is safe in paths, metric labels and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, pattern = "^[a-z0-9_-]{1,64}$"))]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseIdError { kind: "tenant", value: s.chars().take(64).collect() })
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_restricted_to_safe_characters() {
        assert!("acme".parse::<TenantId>().is_ok());
        assert!("acme-eu_2".parse::<TenantId>().is_ok());
        for bad in ["", "Acme", "a b", "a/b", "ü", &"x".repeat(65)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn uuid_ids_round_trip_and_reject_garbage() {
        let id = ConversationId::new();
        assert_eq!(id.to_string().parse::<ConversationId>().unwrap(), id);
        let err = "not-a-uuid".parse::<ConversationId>().unwrap_err();
        assert_eq!(err.kind, "conversation");
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
    }
}
