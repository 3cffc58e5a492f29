//! The API described as OpenAPI 3.1, generated from the handlers' own annotations
//! (`utoipa`), served at `/openapi.json`, with a Swagger UI at `/docs` whose files are
//! compiled into the binary (no CDN).

use utoipa::OpenApi;

use crate::{jobs, openai, routes, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concierge",
        description = "A self-hosted AI agent server for customer support: conversations answered by a \
                       routed specialist agent with the company's tools and knowledge base, approvals, jobs, \
                       an OpenAI-compatible API and the operator console's data."
    ),
    paths(
        routes::create_conversation,
        routes::list_conversations,
        routes::get_conversation,
        routes::post_message,
        routes::follow_conversation,
        ws::upgrade,
        routes::list_approvals,
        routes::decide_approval,
        routes::put_document,
        routes::list_documents,
        routes::get_document,
        routes::delete_document,
        routes::search,
        routes::list_tickets,
        routes::post_feedback,
        routes::list_feedback,
        routes::stats,
        routes::metrics,
        routes::submit_job,
        routes::get_job,
        openai::chat_completions,
        openai::list_models,
        routes::create_key,
        routes::list_keys,
        routes::revoke_key,
        routes::healthz,
        routes::readyz,
    ),
    components(schemas(routes::ErrorBody, jobs::JobView))
)]
pub struct ApiDoc;

/// The spec as served: each operation says the credential it needs, from the same table
/// the guard enforces (`auth::policy::ROUTES`).
pub fn spec() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    let mut spec = ApiDoc::openapi();
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "An API key (`ck_…`, or one of the environment's) or a JWT of a configured issuer; also accepted as \
             `X-Api-Key`. Roles: widget < operator < admin. A widget reaches a conversation with its \
             `X-Conversation-Token`.",
        ))
        .build();
    spec.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(bearer));
    for (path, item) in spec.paths.paths.iter_mut() {
        let route = declared(path);
        for (method, operation) in operations(item) {
            let Some(operation) = operation else { continue };
            let needs = match crate::auth::policy::access(method, &route) {
                Some(crate::auth::policy::Access::Public) => continue,
                Some(crate::auth::policy::Access::Role(role)) => format!("Needs the {role} role."),
                Some(crate::auth::policy::Access::Conversation) => {
                    "Needs the widget role and, for a widget, the conversation's token.".to_owned()
                }
                None => "Refused to every caller (not in the access table).".to_owned(),
            };
            operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            let description = operation.description.take().unwrap_or_default();
            operation.description = Some(format!("{description}\n\n{needs}").trim().to_owned());
        }
    }
    spec
}

/// The route as the router declares it: the spec's `/v1/documents/{id}` is `{*id}` there.
fn declared(path: &str) -> String {
    path.replace("/v1/documents/{id}", "/v1/documents/{*id}")
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> [(&'static str, Option<&mut utoipa::openapi::path::Operation>); 4] {
    [
        ("GET", item.get.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("PUT", item.put.as_mut()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{Access, ROUTES};

    #[test]
    fn the_spec_and_the_access_table_list_the_same_routes() {
        let mut spec = spec();
        let mut described = Vec::new();
        for (path, item) in spec.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let Some(operation) = operation else { continue };
                let access = crate::auth::policy::access(method, &declared(path));
                assert!(access.is_some(), "{method} {path} is described but has no access rule");
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                assert_eq!(secured, access != Some(Access::Public), "{method} {path}");
                described.push((method.to_owned(), declared(path)));
            }
        }
        // Every route of the table but the pages and the docs themselves is described.
        let undocumented = ["/", "/console", "/web/{name}", "/openapi.json", "/docs", "/docs/", "/docs/{*rest}"];
        for (method, route, _) in ROUTES.iter().filter(|(_, route, _)| !undocumented.contains(route)) {
            assert!(described.contains(&(method.to_string(), route.to_string())), "{method} {route} is not described");
        }
    }
}
