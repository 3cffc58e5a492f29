//! Auth end to end: every route of the access table tried with no, forged, revoked,
//! expired and wrong-role credentials; widgets kept to their own conversations over REST
//! and WebSocket; keys made, listed and revoked; JWTs from a shared secret, a JWKS file and
//! a JWKS URL.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use concierge_server::auth::policy::{Access, ROUTES};
use concierge_server::config::{JwtAlgorithm, JwtIssuerConfig};
use concierge_server::Config;
use futures::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{client_with, TestServer, ADMIN_KEY, WIDGET_KEY};

const HS_ISSUER: &str = "https://id.acme.test";
const HS_SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";
const AUDIENCE: &str = "concierge";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

fn issuer(iss: &str, algorithms: Vec<JwtAlgorithm>) -> JwtIssuerConfig {
    JwtIssuerConfig {
        issuer: iss.into(),
        audience: AUDIENCE.into(),
        algorithms,
        secret_env: None,
        jwks_file: None,
        jwks_url: None,
        jwks_refresh_secs: 3600,
        role_claim: "role".into(),
        tenant_claim: None,
        leeway_secs: 0,
    }
}

fn with_hs_issuer(config: &mut Config) {
    let mut hs = issuer(HS_ISSUER, vec![JwtAlgorithm::HS256]);
    hs.secret_env = Some("TEST_JWT_SECRET".into());
    config.auth.jwt.push(hs);
    config.secrets.jwt_secrets.insert("TEST_JWT_SECRET".into(), HS_SECRET.to_owned().into());
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hs_token(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn claims(iss: &str, role: Value, exp: u64) -> Value {
    json!({ "iss": iss, "aud": AUDIENCE, "sub": "agent-7", "role": role, "exp": exp })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A request path for a declared route.
fn concrete(route: &str, conversation: &str) -> String {
    route
        .replace("{id}", conversation)
        .replace("{*id}", "some/doc")
        .replace("{prefix}", "nosuchprefix")
        .replace("{name}", "chat.js")
        .replace("{*rest}", "index.html")
}

async fn call(server: &TestServer, method: &str, path: &str, credential: Option<&str>) -> (StatusCode, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    // A stream (the events of a conversation) is not read: its status is the answer.
    let json = response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !json {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn make_key(server: &TestServer, role: &str) -> String {
    let response = server.client.post(server.url("/v1/keys")).json(&json!({ "role": role, "label": role })).send();
    let body: Value = response.await.unwrap().json().await.unwrap();
    body["key"].as_str().unwrap_or_else(|| panic!("a key: {body}")).to_owned()
}

fn rank(role: &str) -> u8 {
    match role {
        "widget" => 0,
        "operator" => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_missing_forged_revoked_expired_and_lower_credentials() {
    let server = TestServer::start_with(with_hs_issuer).await;
    let conversation = server.create_conversation().await;
    let widget = make_key(&server, "widget").await;
    let operator = make_key(&server, "operator").await;
    let revoked = make_key(&server, "admin").await;
    let prefix = revoked.split('_').nth(1).unwrap().to_owned();
    let response = server.client.delete(server.url(&format!("/v1/keys/{prefix}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let forged_key = format!("ck_{}_{}", "a".repeat(12), "b".repeat(43));
    let mut forged_secret = revoked.clone();
    forged_secret.pop();
    forged_secret.push(if revoked.ends_with('A') { 'B' } else { 'A' });
    let expired = hs_token(claims(HS_ISSUER, json!("admin"), now() - 120), HS_SECRET);
    let forged_jwt = hs_token(claims(HS_ISSUER, json!("admin"), now() + 600), "another-secret-of-at-least-32-bytes!!");
    let other_audience = {
        let mut c = claims(HS_ISSUER, json!("admin"), now() + 600);
        c["aud"] = json!("someone-else");
        hs_token(c, HS_SECRET)
    };
    let unknown_issuer = hs_token(claims("https://evil.test", json!("admin"), now() + 600), HS_SECRET);
    let refused: [(&str, Option<&str>, &str); 10] = [
        ("none", None, "unauthenticated"),
        ("empty bearer", Some(""), "unauthenticated"),
        ("garbage", Some("not-a-key"), "invalid_credentials"),
        ("forged key", Some(&forged_key), "invalid_credentials"),
        ("wrong secret", Some(&forged_secret), "invalid_credentials"),
        ("revoked key", Some(&revoked), "invalid_credentials"),
        ("expired JWT", Some(&expired), "token_expired"),
        ("forged JWT", Some(&forged_jwt), "invalid_credentials"),
        ("JWT for another audience", Some(&other_audience), "invalid_credentials"),
        ("JWT of an unknown issuer", Some(&unknown_issuer), "invalid_credentials"),
    ];
    let operator_jwt = hs_token(claims(HS_ISSUER, json!("operator"), now() + 600), HS_SECRET);
    let holders: [(&str, &str); 5] = [
        ("widget", &widget),
        ("widget", WIDGET_KEY),
        ("operator", &operator),
        ("operator", &operator_jwt),
        ("admin", ADMIN_KEY),
    ];

    for (method, route, access) in ROUTES {
        let path = concrete(route, &conversation);
        let (status, body) = call(&server, method, &path, None).await;
        if *access == Access::Public {
            assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{method} {path}: {status}");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a credential: {body}");
        for (what, credential, expected) in &refused {
            let (status, body) = call(&server, method, &path, *credential).await;
            assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, *expected), "{method} {path} with {what}");
        }
        let needed = match access {
            Access::Role(role) => role.as_str(),
            _ => "widget",
        };
        for (role, credential) in holders {
            let (status, body) = call(&server, method, &path, Some(credential)).await;
            if rank(role) < rank(needed) {
                assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path} as {role}");
            } else if *access == Access::Conversation && role == "widget" {
                let expected = (StatusCode::FORBIDDEN, "conversation_forbidden");
                assert_eq!((status, code(&body)), expected, "{method} {path} as a widget without the token");
            } else {
                let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
                assert!(!refused, "{method} {path} as {role}: {status} {body}");
            }
        }
    }
    // A route missing from the table is not served to anyone, and says so as a 404 only
    // when no route matches at all.
    let (status, body) = call(&server, "GET", "/v1/nothing-here", Some(ADMIN_KEY)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "route_not_found"));
    // A 401 says how to authenticate.
    let response = reqwest::get(server.url("/v1/stats")).await.unwrap();
    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    // X-Api-Key is read as well.
    let response = reqwest::Client::new().get(server.url("/v1/stats")).header("x-api-key", &operator).send().await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_reaches_only_the_conversations_it_holds_the_token_of() {
    let server = TestServer::start().await;
    let widget = client_with(WIDGET_KEY);
    let open = || async {
        let response = widget.post(server.url("/v1/conversations")).json(&json!({ "channel": "web" })).send().await;
        let body: Value = response.unwrap().json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
    };
    let (a, token_a) = open().await;
    let (b, token_b) = open().await;
    let with = |path: &str, token: &str| widget.get(server.url(path)).header("x-conversation-token", token.to_owned());

    let response = with(&format!("/v1/conversations/{a}"), &token_a).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for (conversation, token) in [(&b, &token_a), (&a, &token_b), (&a, &"forged".to_owned())] {
        let response = with(&format!("/v1/conversations/{conversation}"), token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(code(&response.json().await.unwrap()), "conversation_forbidden");
    }
    let say = |conversation: &str, token: &str| {
        widget
            .post(server.url(&format!("/v1/conversations/{conversation}/messages")))
            .header("x-conversation-token", token.to_owned())
            .json(&json!({ "content": "How do I descale my kettle?" }))
            .send()
    };
    assert_eq!(say(&b, &token_a).await.unwrap().status(), StatusCode::FORBIDDEN);
    let exchange: Value = say(&a, &token_a).await.unwrap().json().await.unwrap();
    let reply = exchange["reply"]["id"].as_str().expect("answered").to_owned();
    let rate = |token: &str| {
        widget
            .post(server.url("/v1/feedback"))
            .header("x-conversation-token", token.to_owned())
            .json(&json!({ "message_id": reply, "rating": 1 }))
            .send()
    };
    assert_eq!(rate(&token_b).await.unwrap().status(), StatusCode::FORBIDDEN, "another conversation's token");
    assert_eq!(rate(&token_a).await.unwrap().status(), StatusCode::CREATED);
    // Operators reach every conversation without tokens; widgets cannot list them.
    assert_eq!(server.transcript(&b).await["id"], json!(b));
    let response = widget.get(server.url("/v1/conversations")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The WebSocket: the key at the handshake, in the subprotocol a browser can set.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws = |key: Option<&str>| {
        let mut request = server.url("/v1/ws").replacen("http", "ws", 1).into_client_request().unwrap();
        let protocols = match key {
            Some(key) => format!("concierge.v1, bearer.{key}"),
            None => "concierge.v1".to_owned(),
        };
        request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match ws(None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("a handshake without a key is refused, got {:?}", other.map(|(_, r)| r.status())),
    }
    match ws(Some("forged-key-of-some-length-000")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("a forged key is refused, got {:?}", other.map(|(_, r)| r.status())),
    }
    let (mut socket, _) = ws(Some(WIDGET_KEY)).await.expect("a widget's socket opens");
    let mut next = async |frame: Value| {
        use tokio_tungstenite::tungstenite::Message;
        socket.send(Message::Text(frame.to_string().into())).await.unwrap();
        loop {
            match socket.next().await.expect("a frame").expect("a good frame") {
                Message::Text(text) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    // The turn's events end with `done` or `error`; only those are kept.
                    if ["conversation", "error", "done"].contains(&event["type"].as_str().unwrap_or("")) {
                        return event;
                    }
                }
                _ => continue,
            }
        }
    };
    let opened = next(json!({ "type": "create_conversation" })).await;
    let c = opened["conversation"]["id"].as_str().unwrap().to_owned();
    assert!(opened["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{opened}");
    let done = next(json!({ "type": "message", "conversation_id": c, "content": "hello" })).await;
    assert_eq!(done["type"], "done", "the socket's own conversation: {done}");
    let refused = next(json!({ "type": "message", "conversation_id": b, "content": "hello" })).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("conversation_forbidden")));
    let done =
        next(json!({ "type": "message", "conversation_id": b, "content": "hello", "access_token": token_b })).await;
    assert_eq!(done["type"], "done", "with the conversation's token: {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_listed_without_secrets_and_revoked_at_once() {
    let server = TestServer::start().await;
    let response = server.client.post(server.url("/v1/keys")).json(&json!({ "role": "operator", "label": "desk" }));
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("ck_{prefix}_")), "{created}");
    assert_eq!((created["role"].as_str(), created["label"].as_str()), (Some("operator"), Some("desk")));

    let operator = client_with(&key);
    for _ in 0..3 {
        assert_eq!(operator.get(server.url("/v1/stats")).send().await.unwrap().status(), StatusCode::OK);
    }
    let response = operator.post(server.url("/v1/keys")).json(&json!({ "role": "admin", "label": "x" })).send();
    assert_eq!(response.await.unwrap().status(), StatusCode::FORBIDDEN, "an operator makes no keys");

    let listed = server.client.get(server.url("/v1/keys")).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains(&prefix) && !listed.contains(&key) && !listed.contains("argon2"), "{listed}");

    let revoked: Value =
        server.client.delete(server.url(&format!("/v1/keys/{prefix}"))).send().await.unwrap().json().await.unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let response = operator.get(server.url("/v1/stats")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a revoked key stops working at once");
    let response = server.client.delete(server.url("/v1/keys/nosuchprefix")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    for bad in [
        json!({ "role": "boss", "label": "x" }),
        json!({ "role": "widget", "label": " " }),
        json!({ "role": "widget" }),
    ] {
        let response = server.client.post(server.url("/v1/keys")).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

/// Serves `body` at `/jwks.json` on a random port; returns the URL.
async fn jwks_server(body: String) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_are_checked_against_a_jwks_file_or_url() {
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    let url = jwks_server(jwks).await;
    let server = TestServer::start_with(|config| {
        let mut file = issuer("https://file.acme.test", vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]);
        file.jwks_file = Some(fixture("jwks.json"));
        file.tenant_claim = Some("tenant".into());
        let mut remote = issuer("https://url.acme.test", vec![JwtAlgorithm::ES256]);
        remote.jwks_url = Some(url.clone());
        remote.role_claim = "roles".into();
        config.auth.jwt = vec![file, remote];
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(fixture("es256.pem")).unwrap()).unwrap();
    let sign = |alg: jsonwebtoken::Algorithm, kid: &str, claims: Value| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let key = if alg == jsonwebtoken::Algorithm::RS256 { &rsa } else { &ec };
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let file_claims = |role: &str, tenant: &str| {
        let mut c = claims("https://file.acme.test", json!(role), now() + 600);
        c["tenant"] = json!(tenant);
        c
    };
    let status = |token: String, path: &'static str| {
        let server = &server;
        async move {
            let (status, body) = call(server, "GET", path, Some(&token)).await;
            (status, code(&body).to_owned())
        }
    };
    let ok = (StatusCode::OK, String::new());
    assert_eq!(status(sign(RS256, "rsa-1", file_claims("operator", "default")), "/v1/stats").await, ok);
    assert_eq!(status(sign(ES256, "ec-1", file_claims("operator", "default")), "/v1/stats").await, ok);
    let refused = |status: StatusCode, code: &str| (status, code.to_owned());
    assert_eq!(
        status(sign(RS256, "rsa-1", file_claims("operator", "globex")), "/v1/stats").await,
        refused(StatusCode::FORBIDDEN, "wrong_tenant")
    );
    assert_eq!(
        status(sign(RS256, "rsa-1", file_claims("operator", "default")), "/v1/keys").await,
        refused(StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        status(sign(RS256, "rsa-1", file_claims("superuser", "default")), "/v1/stats").await,
        refused(StatusCode::FORBIDDEN, "forbidden"),
        "no role known"
    );
    // A key id the set does not have, and a key of one kind named as another.
    assert_eq!(
        status(sign(RS256, "rsa-2", file_claims("operator", "default")), "/v1/stats").await,
        refused(StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    assert_eq!(
        status(sign(ES256, "rsa-1", file_claims("operator", "default")), "/v1/stats").await,
        refused(StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let mut early = file_claims("operator", "default");
    early["nbf"] = json!(now() + 300);
    assert_eq!(
        status(sign(RS256, "rsa-1", early), "/v1/stats").await,
        refused(StatusCode::UNAUTHORIZED, "token_not_yet_valid")
    );

    // From the URL: ES256 only, roles as a list (the highest known wins).
    let remote = |roles: Value| {
        let mut c = claims("https://url.acme.test", json!(null), now() + 600);
        c["roles"] = roles;
        c
    };
    assert_eq!(status(sign(ES256, "ec-1", remote(json!(["widget", "admin", "x"]))), "/v1/keys").await, ok);
    assert_eq!(
        status(sign(RS256, "rsa-1", remote(json!(["admin"]))), "/v1/keys").await,
        refused(StatusCode::UNAUTHORIZED, "invalid_credentials"),
        "RS256 is not among this issuer's algorithms"
    );
}
