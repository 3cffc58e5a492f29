//! The knowledge-base API over real HTTP: documents added, replaced, listed and deleted
//! through `/v1/documents`, what `/v1/search` reports stage by stage, the bad inputs of
//! both, and a knowledge base that outlives its process.

mod support;

use std::sync::Arc;

use concierge_core::TenantId;
use concierge_server::config::{EmbedderConfig, KnowledgeConfig, Secrets};
use concierge_server::knowledge::Knowledge;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestServer;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn put(server: &TestServer, body: Value) -> (StatusCode, Value) {
    server.post_raw("/v1/documents", Some("application/json"), body.to_string()).await
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = server.client.get(server.url(path)).send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(server: &TestServer, path: &str) -> StatusCode {
    server.client.delete(server.url(path)).send().await.expect("send").status()
}

const WARRANTY_EXTENSION: &str = "# KettleShield extended warranty\n\nKettleShield adds two years to the warranty of \
any kettle.\n\n## Price\n\nKettleShield costs $19 for kettles and is bought within 30 days of delivery.";

#[tokio::test]
async fn documents_are_added_replaced_listed_searched_and_deleted() {
    let server = TestServer::start().await;
    let doc = json!({ "id": "care/extended-warranty", "content": WARRANTY_EXTENSION, "category": "warranty",
                      "url": "https://help.acme.example/care" });
    let (status, body) = put(&server, doc.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "added");
    assert_eq!(body["document"]["title"], "KettleShield extended warranty");
    assert_eq!(body["document"]["version"], 1);
    let (status, body) = put(&server, doc.clone()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("unchanged")));

    let (status, found) = get(&server, "/v1/search?q=how%20much%20does%20kettleshield%20cost").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let top: Vec<&str> =
        found["results"].as_array().unwrap().iter().take(3).map(|r| r["document_id"].as_str().unwrap()).collect();
    assert!(top.contains(&"care/extended-warranty"), "{found}");
    let context = found["context"].as_array().unwrap();
    assert!(context.iter().any(|p| p["document_id"] == "care/extended-warranty"), "{found}");

    let changed =
        json!({ "id": "care/extended-warranty", "content": "# Extended warranty\n\nKettleShield is no longer sold." });
    let (status, body) = put(&server, changed).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("updated")));
    assert_eq!(body["document"]["version"], 2);
    let (_, found) = get(&server, "/v1/search?q=kettleshield%20price%20kettles&k=20").await;
    let texts: Vec<&str> = found["results"].as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert!(!texts.iter().any(|t| t.contains("$19")), "the old revision is gone from every index: {texts:?}");

    let (status, list) = get(&server, "/v1/documents").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"care/extended-warranty") && ids.contains(&"return-policy"), "{ids:?}");
    let (status, one) = get(&server, "/v1/documents/care/extended-warranty").await;
    assert_eq!((status, one["source"].as_str()), (StatusCode::OK, Some("api")));

    assert_eq!(delete(&server, "/v1/documents/care/extended-warranty").await, StatusCode::NO_CONTENT);
    assert_eq!(delete(&server, "/v1/documents/care/extended-warranty").await, StatusCode::NOT_FOUND);
    let (status, _) = get(&server, "/v1/documents/care/extended-warranty").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, found) = get(&server, "/v1/search?q=kettleshield%20no%20longer%20sold&k=20").await;
    assert!(found["results"].as_array().unwrap().iter().all(|r| r["document_id"] != "care/extended-warranty"));
}

#[tokio::test]
async fn search_shows_every_stage_and_the_numbered_context() {
    let server = TestServer::start().await;
    let (status, body) = get(&server, "/v1/search?q=How%20do%20I%20reset%20my%20password%3F").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "hybrid");
    assert_eq!(body["not_found"], false);
    let best = &body["results"][0];
    assert_eq!(best["rank"], 1);
    assert_eq!(best["document_id"], "password-reset");
    for stage in ["bm25", "vector"] {
        assert!(best["scores"][stage]["rank"].as_u64().is_some(), "{stage}: {best}");
    }
    assert!(best["scores"]["fused"].as_f64().unwrap() > 0.0);
    let context = body["context"].as_array().unwrap();
    assert!(!context.is_empty() && context.len() <= 3);
    assert_eq!(context.last().unwrap()["document_id"], "password-reset", "most relevant last");
    let numbers: Vec<u64> = context.iter().map(|p| p["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=context.len() as u64).collect::<Vec<_>>());
    assert!(body["timings"]["total_ms"].as_f64().unwrap() > 0.0);

    for mode in ["keyword", "vector"] {
        let (status, body) = get(&server, &format!("/v1/search?q=reset%20password&mode={mode}&k=3")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["mode"], mode);
        assert!(body["results"].as_array().unwrap().len() <= 3);
    }
    let (_, filtered) = get(&server, "/v1/search?q=reset%20password&category=shipping").await;
    assert!(filtered["results"].as_array().unwrap().iter().all(|r| r["category"] == "shipping"), "{filtered}");
}

#[tokio::test]
async fn a_question_nothing_answers_is_not_found_and_the_answer_says_so() {
    let server = TestServer::start().await;
    let (_, body) = get(&server, "/v1/search?q=Do%20you%20sell%20live%20goldfish%20for%20aquariums%3F").await;
    assert_eq!(body["not_found"], true, "{body}");
    assert!(body["context"].as_array().unwrap().is_empty());
    let id = server.create_conversation().await;
    let (_, reply) = server.say(&id, "Do you sell live goldfish for aquariums?").await;
    assert_eq!(reply["reply"]["metadata"]["grounded"], false, "{reply}");
    assert_eq!(reply["reply"]["metadata"]["retrieval"]["not_found"], true);
}

/// The PDF the retrieval crate's ingest tests read (fpdf2's output, see its generator).
const WARRANTY_PDF: &[u8] = include_bytes!("../../retrieval/tests/fixtures/warranty.pdf");

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_pdf_sent_as_base64_is_ingested_by_section_and_answers_searches() {
    let server = TestServer::start().await;
    let doc = json!({ "id": "care/warranty", "format": "application/pdf", "content_base64": base64(WARRANTY_PDF) });
    let (status, body) = put(&server, doc).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["document"]["title"], "Acme appliance warranty");
    let (status, found) = get(&server, "/v1/search?q=is%20damage%20from%20the%20wrong%20voltage%20covered").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let hit = found["results"].as_array().unwrap().iter().take(3).find(|r| r["document_id"] == "care/warranty");
    let hit = hit.unwrap_or_else(|| panic!("the PDF's section is among the top 3: {found}"));
    assert_eq!(hit["section"], "What it does not cover", "{hit}");
    assert!(
        hit["text"].as_str().unwrap().starts_with("Limescale, accidental drops, damage from the wrong voltage"),
        "{hit}"
    );

    let cases = [
        json!({ "id": "p", "format": "pdf", "content_base64": base64(b"plain words, not a PDF") }),
        json!({ "id": "p", "format": "pdf", "content_base64": base64(&WARRANTY_PDF[..900]) }),
        json!({ "id": "p", "format": "pdf", "content_base64": "%%% not base64 %%%" }),
        json!({ "id": "p", "format": "pdf", "content": "text where bytes belong", "content_base64": base64(WARRANTY_PDF) }),
        json!({ "id": "p", "format": "text" }),
    ];
    for body in cases {
        let (got, answer) = put(&server, body.clone()).await;
        assert_eq!((got, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"), "{body}: {answer}");
    }
    let (status, list) = get(&server, "/v1/documents").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["documents"].as_array().unwrap().iter().all(|d| d["id"] != "p"), "nothing refused was kept");
}

#[tokio::test]
async fn bad_documents_and_searches_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({ "id": "x", "content": "Hello.", "format": "pdf" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
        ),
        (json!({ "id": "x", "content": "   " }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
        (json!({ "id": "../etc/passwd", "content": "Hi." }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
        (json!({ "id": "", "content": "Hi." }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
        (json!({ "id": "a b", "content": "Hi." }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
        (
            json!({ "id": "x", "content": "Hi.", "url": "javascript:alert(1)" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
        ),
        (
            json!({ "id": "x", "content": "+++\nid = \n+++\nbody" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
        ),
        (json!({ "id": "x", "content": "Hi.", "colour": "red" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({ "content": "Hi." }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (body, status, expected) in cases {
        let (got, answer) = put(&server, body.clone()).await;
        assert_eq!((got, code(&answer)), (status, expected), "{body}: {answer}");
    }
    let (status, body) = server.post_raw("/v1/documents", Some("application/json"), "{not json").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let huge = json!({ "id": "huge", "content": "word ".repeat(1_000_000) }).to_string();
    let (status, body) = server.post_raw("/v1/documents", Some("application/json"), huge).await;
    assert_eq!((status, code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    let too_long = format!("/v1/search?q={}", "a".repeat(2_001));
    for path in [
        "/v1/search",
        "/v1/search?q=",
        "/v1/search?q=%20%20",
        "/v1/search?q=x&mode=fuzzy",
        "/v1/search?q=x&k=0",
        "/v1/search?q=x&k=many",
        "/v1/search?q=x&colour=red",
        too_long.as_str(),
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"), "{path}: {body}");
    }
    for path in ["/v1/documents/no-such-document", "/v1/documents/a/b/c"] {
        let (status, body) = get(&server, path).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{path}");
    }
    let (status, body) = get(&server, "/v1/documents/..%2Fx").await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"), "{body}");
}

#[tokio::test]
async fn the_knowledge_base_outlives_its_process_without_embedding_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = concierge_store::open(&format!("sqlite://{}", dir.path().join("kb.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = TenantId::try_from("acme".to_owned()).unwrap();
    store
        .upsert_tenant(&concierge_core::Tenant {
            id: tenant.clone(),
            name: "Acme".into(),
            tier: "standard".into(),
            created_at: concierge_core::now(),
        })
        .await
        .unwrap();
    let config = KnowledgeConfig {
        data_dir: Some(dir.path().join("vectors")),
        embedder: EmbedderConfig::Local {
            path: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2"),
            threads: 0,
        },
        ..KnowledgeConfig::default()
    };
    // Four of the help centre's articles: enough to show reuse, quick to embed twice.
    let kb_dir = dir.path().join("kb");
    std::fs::create_dir(&kb_dir).unwrap();
    let acme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/acme/kb");
    for name in ["refund-timing-and-methods.md", "return-policy.md", "password-reset.md", "tracking-your-order.md"] {
        std::fs::copy(acme.join(name), kb_dir.join(name)).unwrap();
    }
    let first =
        Knowledge::open(Arc::clone(&store), &config, &Secrets::default(), std::slice::from_ref(&tenant)).await.unwrap();
    let summary = first.ingest_folder(&tenant, &kb_dir, &|_, _, _| {}).await.unwrap();
    assert!(summary.added == 4 && summary.chunks > summary.added, "{summary:?}");
    drop(first);

    let second =
        Knowledge::open(Arc::clone(&store), &config, &Secrets::default(), std::slice::from_ref(&tenant)).await.unwrap();
    let stats = second.load_stats();
    assert_eq!((stats.reused, stats.embedded), (summary.added, 0), "{stats:?}");
    let again = second.ingest_folder(&tenant, &kb_dir, &|_, _, _| {}).await.unwrap();
    assert_eq!((again.unchanged, again.added, again.updated), (summary.added, 0, 0));
    let request = concierge_retrieval::SearchRequest::new(tenant.clone(), "how long do refunds take");
    let found = second.search(&request).await.unwrap();
    assert!(found.chunks.iter().any(|c| c.document_id == "refund-timing-and-methods"), "{:?}", found.chunks);

    // A vector file that is cut short is not trusted: everything is embedded again.
    drop(second);
    for entry in std::fs::read_dir(dir.path().join("vectors")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "manifest.json" {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
    }
    let third = Knowledge::open(Arc::clone(&store), &config, &Secrets::default(), &[tenant]).await.unwrap();
    assert_eq!(third.load_stats().embedded, summary.added);
}
