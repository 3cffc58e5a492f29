//! Who may call what: one table, read by the guard on every request and by the OpenAPI
//! spec. A route missing from the table is refused, so a new route is closed until it is
//! given its place here.

use concierge_core::ApiRole;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the pages, health, the API's description.
    Public,
    /// A credential of at least this role.
    Role(ApiRole),
    /// A credential of at least the widget role that may reach the conversation named in the
    /// path: operators and admins reach every conversation of their tenant; a widget only
    /// those it holds the conversation token of.
    Conversation,
}

/// (method, route as declared, access). `*` is any method.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/", Access::Public),
    ("GET", "/console", Access::Public),
    ("GET", "/web/{name}", Access::Public),
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/docs", Access::Public),
    ("GET", "/docs/", Access::Public),
    ("GET", "/docs/{*rest}", Access::Public),
    ("POST", "/v1/conversations", Access::Role(ApiRole::Widget)),
    ("GET", "/v1/conversations", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/conversations/{id}", Access::Conversation),
    ("GET", "/v1/conversations/{id}/events", Access::Conversation),
    ("POST", "/v1/conversations/{id}/messages", Access::Conversation),
    ("GET", "/v1/ws", Access::Role(ApiRole::Widget)),
    ("POST", "/v1/feedback", Access::Role(ApiRole::Widget)),
    ("GET", "/v1/feedback", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/documents", Access::Role(ApiRole::Operator)),
    ("POST", "/v1/documents", Access::Role(ApiRole::Admin)),
    ("GET", "/v1/documents/{*id}", Access::Role(ApiRole::Operator)),
    ("DELETE", "/v1/documents/{*id}", Access::Role(ApiRole::Admin)),
    ("GET", "/v1/search", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/approvals", Access::Role(ApiRole::Operator)),
    ("POST", "/v1/approvals/{id}", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/tickets", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/stats", Access::Role(ApiRole::Operator)),
    ("GET", "/metrics", Access::Role(ApiRole::Operator)),
    ("POST", "/v1/chat/completions", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/models", Access::Role(ApiRole::Operator)),
    ("POST", "/v1/jobs", Access::Role(ApiRole::Operator)),
    ("GET", "/v1/jobs/{id}", Access::Role(ApiRole::Operator)),
    ("POST", "/v1/keys", Access::Role(ApiRole::Admin)),
    ("GET", "/v1/keys", Access::Role(ApiRole::Admin)),
    ("DELETE", "/v1/keys/{prefix}", Access::Role(ApiRole::Admin)),
];

/// The access of a route, or `None` when the table does not have it.
pub fn access(method: &str, route: &str) -> Option<Access> {
    // HEAD is answered by the GET route.
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES.iter().find(|(m, r, _)| *r == route && (*m == method || *m == "*")).map(|(_, _, access)| *access)
}

/// Roles in order of what they may do.
pub fn rank(role: ApiRole) -> u8 {
    match role {
        ApiRole::Widget => 0,
        ApiRole::Operator => 1,
        ApiRole::Admin => 2,
    }
}

/// Whether `role` is at least `needed`.
pub fn allows(role: ApiRole, needed: ApiRole) -> bool {
    rank(role) >= rank(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_method_and_declared_path() {
        assert_eq!(access("GET", "/healthz"), Some(Access::Public));
        assert_eq!(access("HEAD", "/healthz"), Some(Access::Public));
        assert_eq!(access("POST", "/v1/documents"), Some(Access::Role(ApiRole::Admin)));
        assert_eq!(access("GET", "/v1/documents"), Some(Access::Role(ApiRole::Operator)));
        assert_eq!(access("PUT", "/v1/documents"), None);
        assert_eq!(access("GET", "/v1/unknown"), None);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(allows(ApiRole::Admin, ApiRole::Operator));
        assert!(allows(ApiRole::Operator, ApiRole::Operator));
        assert!(!allows(ApiRole::Widget, ApiRole::Operator));
        assert!(!allows(ApiRole::Operator, ApiRole::Admin));
    }
}
