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
        routes::submit_job,
        routes::get_job,
        openai::chat_completions,
        openai::list_models,
        routes::healthz,
        routes::readyz,
    ),
    components(schemas(routes::ErrorBody, jobs::JobView))
)]
pub struct ApiDoc;

/// The spec as served.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut spec = ApiDoc::openapi();
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    spec
}
