//! `GET /v1/ws`: a WebSocket carrying the same turn events as the SSE stream, for clients
//! that keep one connection open across turns (the web chat, contact-centre software).
//!
//! The handshake is authenticated like any request: a key or token in `Authorization`, or,
//! from a browser, in the subprotocol `bearer.<key>` offered next to `concierge.v1` (which
//! the server selects). A widget key reaches the conversations it opened on this socket,
//! and others only with their `access_token` in the frame.
//!
//! Frames are JSON text. The client sends
//! `{"type":"message","conversation_id":"…","content":"…","ref":"…"}` (`ref`, optional,
//! is echoed on every event of that turn), `{"type":"create_conversation"}` and
//! `{"type":"ping"}`; the server answers with `conversation`, `pong`, and each turn's
//! `meta`, `tool_started`, …, `token`, `citation`, `done` (DESIGN.md "Events on the
//! stream"), every one with its `conversation_id` and `ref`.
//!
//! Bad input never closes the connection when it need not: a frame that is not JSON, of an
//! unknown type, binary, or a message the API would refuse gets an `error` event with the
//! same codes as the REST API. What the server must protect itself from does close it: a
//! frame over the size limit (close code 1009), a client that reads nothing for
//! [`SLOW_CLIENT`] (its events would pile up), and silence for [`IDLE`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use concierge_core::ConversationId;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::auth::{self, AuthError, Caller};
use crate::conversation::{ConversationService, MAX_REF_CHARS};
use crate::error::ApiError;
use crate::extract::BodyLimit;

/// Turns one connection may have running at once.
const TURNS_PER_CONNECTION: usize = 4;
/// Events held for a connection whose client reads slowly.
const OUTBOX: usize = 256;
/// A client that takes longer than this to take one frame is disconnected.
const SLOW_CLIENT: Duration = Duration::from_secs(30);
/// A connection silent this long (no frame, no pong) is closed.
const IDLE: Duration = Duration::from_secs(300);
/// How often the server pings, which keeps proxies from closing a quiet connection.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Close code for a frame over the size limit (RFC 6455 "message too big").
const TOO_BIG: u16 = 1009;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Incoming {
    Message {
        conversation_id: ConversationId,
        content: String,
        #[serde(default, rename = "ref")]
        reference: Option<String>,
        /// The conversation's token, for one this socket did not open (a widget needs it).
        #[serde(default)]
        access_token: Option<String>,
    },
    CreateConversation {
        #[serde(default)]
        customer_ref: Option<String>,
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
    Ping {
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
}

const TYPES: &str = "message, create_conversation, ping";

#[utoipa::path(get, path = "/v1/ws", tag = "conversations",
    responses((status = 101, description = "a WebSocket of JSON frames: send message, create_conversation, ping; receive conversation, pong and each turn's events")))]
pub async fn upgrade(
    State(service): State<Arc<ConversationService>>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    Extension(caller): Extension<Caller>,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = Peer { caller, opened: Mutex::new(HashSet::new()) };
    ws.protocols([auth::WS_PROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| session(service, Arc::new(peer), socket, limit))
}

/// Who is on the other end, and the conversations opened on this socket.
struct Peer {
    caller: Caller,
    opened: Mutex<HashSet<ConversationId>>,
}

impl Peer {
    fn may_reach(&self, id: ConversationId, token: Option<&str>) -> bool {
        self.opened.lock().unwrap_or_else(|p| p.into_inner()).contains(&id) || self.caller.may_reach(id, token)
    }
}

async fn session(service: Arc<ConversationService>, peer: Arc<Peer>, socket: WebSocket, limit: usize) {
    let (mut sink, mut frames) = socket.split();
    let (outbox, mut to_send) = mpsc::channel::<Message>(OUTBOX);
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let frame = tokio::select! {
                frame = to_send.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            let closing = matches!(frame, Message::Close(_));
            match tokio::time::timeout(SLOW_CLIENT, sink.send(frame)).await {
                Ok(Ok(())) if !closing => {}
                Ok(Ok(())) => break,
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::info!("a WebSocket client read nothing for {SLOW_CLIENT:?}; disconnected");
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });
    let turns = Arc::new(Semaphore::new(TURNS_PER_CONNECTION));
    loop {
        let frame = match tokio::time::timeout(IDLE, frames.next()).await {
            Err(_) => {
                let _ = outbox.send(close(1000, "idle")).await;
                break;
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Err(error))) => {
                // The protocol layer refused the frame; the usual cause is its size.
                let text = error.to_string();
                if text.contains("too long") || text.contains("too big") || text.contains("size") {
                    let _ = outbox.send(close(TOO_BIG, &format!("frames are limited to {limit} bytes"))).await;
                }
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                send(&outbox, error_event(None, "binary_not_supported", "frames are JSON text")).await;
                continue;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        handle(&service, &peer, &outbox, &turns, text.as_str()).await;
    }
    drop(outbox);
    let _ = writer.await;
}

async fn handle(
    service: &Arc<ConversationService>,
    peer: &Peer,
    outbox: &mpsc::Sender<Message>,
    turns: &Arc<Semaphore>,
    text: &str,
) {
    let incoming = match parse(text) {
        Ok(incoming) => incoming,
        Err((code, message)) => return send(outbox, error_event(None, code, &message)).await,
    };
    match incoming {
        Incoming::Ping { reference } => send(outbox, json!({ "type": "pong", "ref": reference })).await,
        Incoming::CreateConversation { customer_ref, reference } => match service.create(customer_ref, "ws").await {
            Ok(conversation) => {
                peer.opened.lock().unwrap_or_else(|p| p.into_inner()).insert(conversation.id);
                let token = peer.caller.token_for(conversation.id);
                let event = json!({ "type": "conversation", "ref": reference, "conversation": conversation, "access_token": token });
                send(outbox, event).await
            }
            Err(error) => send(outbox, api_error(reference, &error)).await,
        },
        Incoming::Message { conversation_id, content, reference, access_token } => {
            if reference.as_ref().is_some_and(|r| r.chars().count() > MAX_REF_CHARS) {
                let message = format!("ref must be at most {MAX_REF_CHARS} characters");
                return send(outbox, error_event(None, "invalid_body", &message)).await;
            }
            if !peer.may_reach(conversation_id, access_token.as_deref()) {
                return send(outbox, api_error(reference, &ApiError::Auth(AuthError::ConversationForbidden))).await;
            }
            let Ok(permit) = Arc::clone(turns).try_acquire_owned() else {
                let message = format!("at most {TURNS_PER_CONNECTION} turns may run at once on one connection");
                return send(outbox, error_event(reference, "too_many_turns", &message)).await;
            };
            let mut events = match service.post_message_streamed(conversation_id, &content).await {
                Ok(events) => events,
                Err(error) => return send(outbox, api_error(reference, &error)).await,
            };
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let _permit = permit;
                while let Some(event) = events.recv().await {
                    let mut data = event.data;
                    if let Value::Object(fields) = &mut data {
                        fields.insert("type".into(), json!(event.kind));
                        fields.insert("conversation_id".into(), json!(conversation_id));
                        fields.insert("ref".into(), json!(reference));
                    }
                    // A connection that has closed stops only the sending; the turn goes on
                    // and its reply is stored.
                    if outbox.send(Message::Text(Utf8Bytes::from(data.to_string()))).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

/// A frame, read: its `type` first, so an unknown type is told apart from a bad frame.
fn parse(text: &str) -> Result<Incoming, (&'static str, String)> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ("malformed_json", format!("the frame is not JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(("invalid_body", "a frame needs a string `type`".into()))?;
    if !TYPES.split(", ").any(|t| t == kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err(("unknown_type", format!("unknown frame type `{shown}`; expected one of: {TYPES}")));
    }
    serde_json::from_value(value).map_err(|e| ("invalid_body", format!("the `{kind}` frame does not fit: {e}")))
}

fn error_event(reference: Option<String>, code: &str, message: &str) -> Value {
    json!({ "type": "error", "ref": reference, "code": code, "message": message })
}

fn api_error(reference: Option<String>, error: &ApiError) -> Value {
    let (_, code) = error.status_and_code();
    error_event(reference, code, &error.to_string())
}

async fn send(outbox: &mpsc::Sender<Message>, event: Value) {
    let _ = outbox.send(Message::Text(Utf8Bytes::from(event.to_string()))).await;
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_by_type() {
        let id = ConversationId::new();
        let frame = json!({ "type": "message", "conversation_id": id, "content": "hi", "ref": "r1" }).to_string();
        assert!(matches!(parse(&frame), Ok(Incoming::Message { reference: Some(r), .. }) if r == "r1"));
        assert!(matches!(parse(r#"{"type":"ping"}"#), Ok(Incoming::Ping { reference: None })));
        assert!(matches!(parse(r#"{"type":"create_conversation"}"#), Ok(Incoming::CreateConversation { .. })));
    }

    #[test]
    fn a_bad_frame_gets_the_code_that_says_why() {
        let code = |text: &str| parse(text).err().map(|(code, _)| code);
        assert_eq!(code("not json"), Some("malformed_json"));
        assert_eq!(code(r#"{"content":"hi"}"#), Some("invalid_body"));
        assert_eq!(code(r#"{"type":"subscribe"}"#), Some("unknown_type"));
        assert_eq!(code(r#"{"type":"message","content":"hi"}"#), Some("invalid_body"));
        assert_eq!(code(r#"{"type":"message","conversation_id":"nope","content":"hi"}"#), Some("invalid_body"));
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), Some("invalid_body"));
    }
}
