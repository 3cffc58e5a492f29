//! The embedded model on the real GGUF (Qwen2.5-Coder-0.5B-Instruct, its Q5_0 and Q6_K
//! matrices re-quantised to Q8_0), made by `scripts/fetch-models`: answers, tool calls, stop
//! sequences, JSON mode, prefix reuse, batching and the limits around them. Greedy decoding
//! makes the content assertions exact.

#![cfg(feature = "local")]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use concierge_llm::local::{LocalModel, LocalModelConfig};
use concierge_llm::{
    collect, ChatEvent, ChatMessage, ChatModel, ChatRequest, FinishReason, LlmError, ToolChoice, ToolDefinition,
};
use futures::StreamExt;
use serde_json::json;

fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/qwen2.5-coder-0.5b-instruct-q8_0-mix.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-models", path.display());
    path
}

fn load(sequences: u32, queue: usize) -> LocalModel {
    let config =
        LocalModelConfig { path: model_path(), context_tokens: 2048, sequences, queue, ..LocalModelConfig::default() };
    LocalModel::load(config).expect("the model loads")
}

/// One model for the tests that only look at answers; they run at once and share batches.
fn shared() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(load(4, 16))).clone()
}

fn order_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_order".into(),
        description: "Look up an Acme order by its number (like A-10024): status, items, tracking.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "The order number, e.g. A-10024"}},
            "required": ["order_id"],
        }),
    }
}

fn ask(system: &str, user: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
        temperature: Some(0.0),
        max_tokens: Some(48),
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn answers_a_fixed_prompt_with_the_same_right_answer_every_time() {
    let model = shared();
    let request = ask("You are a helpful assistant. Answer in one word.", "What is the capital of France?");
    let first = model.complete(&request).await.unwrap();
    let second = model.complete(&request).await.unwrap();
    assert!(first.text.contains("Paris"), "{:?}", first.text);
    assert_eq!(first.text, second.text, "greedy decoding is deterministic");
    assert_eq!(first.finish, Some(FinishReason::Stop));
    let usage = first.usage.unwrap();
    assert!(usage.prompt_tokens > 10 && usage.completion_tokens >= 1, "{usage:?}");
    assert_eq!(model.id(), "local/qwen2.5-coder-0.5b-instruct-q8_0-mix");
}

#[tokio::test]
async fn calls_a_tool_with_the_arguments_from_the_message() {
    let model = shared();
    let mut request =
        ask("You are Acme's support assistant. Use the tools to look up orders.", "Where is my order A-10024?");
    request.tools = vec![order_tool()];
    request.max_tokens = Some(96);
    let response = model.complete(&request).await.unwrap();
    assert_eq!(response.finish, Some(FinishReason::ToolCalls), "{response:?}");
    assert_eq!(response.tool_calls.len(), 1, "{response:?}");
    assert_eq!(response.tool_calls[0].name, "get_order");
    assert_eq!(response.tool_calls[0].arguments, json!({"order_id": "A-10024"}));
}

#[tokio::test]
async fn answers_from_a_tool_result_fed_back() {
    let model = shared();
    let mut request = ask(
        "You are Acme's support assistant. When a tool response is given, answer the customer in one sentence from it.",
        "Where is my order A-10024?",
    );
    request.tools = vec![order_tool()];
    request.max_tokens = Some(64);
    let mut call = ChatMessage::assistant("");
    call.tool_calls = vec![concierge_llm::ToolCall {
        id: "call_0".into(),
        name: "get_order".into(),
        arguments: json!({"order_id": "A-10024"}),
    }];
    request.messages.push(call);
    request.messages.push(ChatMessage::tool_result(
        "call_0",
        r#"{"order_id":"A-10024","status":"shipped","carrier":"DHL","tracking":"JD014600003SE"}"#,
    ));
    // The result is in; this turn phrases the answer and may not call again.
    request.tool_choice = ToolChoice::None;
    let response = model.complete(&request).await.unwrap();
    assert!(response.tool_calls.is_empty(), "{response:?}");
    assert!(response.text.contains("shipped") || response.text.contains("DHL"), "{:?}", response.text);
}

#[tokio::test]
async fn a_required_tool_choice_always_yields_a_call() {
    let model = shared();
    let mut request = ask("You are Acme's support assistant.", "Can you check A-10031 for me?");
    request.tools = vec![order_tool()];
    request.tool_choice = ToolChoice::Tool("get_order".into());
    let response = model.complete(&request).await.unwrap();
    assert_eq!(response.tool_calls[0].arguments["order_id"], "A-10031", "{response:?}");
}

#[tokio::test]
async fn streams_text_in_pieces_ending_with_usage_and_finish() {
    let model = shared();
    let request = ask("You are a helpful assistant.", "Name three primary colours, comma separated.");
    let events: Vec<_> = model.stream(&request).await.unwrap().collect().await;
    let deltas = events.iter().filter(|e| matches!(e, Ok(ChatEvent::TextDelta { .. }))).count();
    assert!(deltas >= 2, "text arrives token by token: {events:?}");
    assert!(matches!(events.last(), Some(Ok(ChatEvent::Finish { .. }))));
    assert!(events.iter().any(|e| matches!(e, Ok(ChatEvent::Usage { .. }))));
}

#[tokio::test]
async fn a_stop_sequence_ends_the_answer_before_it() {
    let model = shared();
    let mut request = ask("You are a helpful assistant.", "Count from 1 to 10, separated by commas and spaces.");
    request.stop = vec![", 5".into()];
    let response = model.complete(&request).await.unwrap();
    assert!(response.text.contains("1, 2, 3, 4"), "{:?}", response.text);
    assert!(!response.text.contains('5'), "{:?}", response.text);
    assert_eq!(response.finish, Some(FinishReason::Stop));
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_and_says_so() {
    let model = shared();
    let mut request = ask("You are a helpful assistant.", "Write a long story about a lighthouse keeper.");
    request.max_tokens = Some(5);
    let response = model.complete(&request).await.unwrap();
    assert_eq!(response.finish, Some(FinishReason::Length));
    assert_eq!(response.usage.unwrap().completion_tokens, 5);
}

#[tokio::test]
async fn json_mode_answers_with_a_json_object() {
    let model = shared();
    let mut request = ask(
        "Extract the order number and the customer's mood. Answer with JSON only.",
        "My order A-10024 is late again and I am furious!",
    );
    request.json_mode = true;
    request.max_tokens = Some(60);
    let response = model.complete(&request).await.unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&response.text).unwrap_or_else(|e| panic!("{e}: {:?}", response.text));
    assert!(value.is_object(), "{value}");
    assert!(value.to_string().contains("A-10024"), "{value}");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_refused_before_any_work() {
    let model = shared();
    let request = ask("You are a helpful assistant.", &"order status ".repeat(3000));
    let err = model.stream(&request).await.err().expect("refused when asked, not after queueing");
    assert!(matches!(err, LlmError::ContextOverflow { limit: 2048, .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn counts_tokens_with_the_models_own_tokenizer() {
    let model = shared();
    assert_eq!(model.count_tokens(""), 0);
    assert_eq!(model.count_tokens("Hello"), 1);
    assert_eq!(model.count_tokens("<|im_start|>user"), 2, "special tokens are one token each");
}

#[tokio::test]
async fn the_next_turn_reuses_the_cached_prefix() {
    let model = load(2, 4);
    let mut first = ask("You are Acme's support assistant. Answer briefly.", "What are your opening hours?");
    first.tools = vec![order_tool()];
    let answer = model.complete(&first).await.unwrap();
    let after_first = model.stats();
    let first_prompt = answer.usage.unwrap().prompt_tokens;
    assert_eq!(after_first.prompt_tokens_reused, 0);
    assert_eq!(after_first.prompt_tokens_evaluated, first_prompt);

    let mut second = first.clone();
    second.messages.push(ChatMessage::assistant(answer.text));
    second.messages.push(ChatMessage::user("And on Sundays?"));
    let answer = model.complete(&second).await.unwrap();
    let after_second = model.stats();
    let second_prompt = answer.usage.unwrap().prompt_tokens;
    let reused = after_second.prompt_tokens_reused - after_first.prompt_tokens_reused;
    let evaluated = after_second.prompt_tokens_evaluated - after_first.prompt_tokens_evaluated;
    assert_eq!(reused + evaluated, second_prompt);
    assert!(reused >= first_prompt - 1, "the whole first prompt is reused: {reused} of {first_prompt}");
    assert!(evaluated < second_prompt / 3, "only the new turn is evaluated: {evaluated} of {second_prompt}");

    // Another conversation with the same system prompt and tools starts from that prefix too.
    let mut other = ask("You are Acme's support assistant. Answer briefly.", "Do you ship to Canada?");
    other.tools = vec![order_tool()];
    let answer = model.complete(&other).await.unwrap();
    let reused = model.stats().prompt_tokens_reused - after_second.prompt_tokens_reused;
    assert!(reused * 10 >= answer.usage.unwrap().prompt_tokens * 7, "shared prefix reused: {reused}");
}

#[tokio::test]
async fn conversations_at_once_are_decoded_in_shared_batches() {
    let model = Arc::new(load(3, 8));
    let questions = ["What is 2 + 2?", "What colour is the sky on a clear day?", "How many days are in a week?"];
    let answers = futures::future::join_all(questions.iter().map(|q| {
        let model = Arc::clone(&model);
        let request = ask("You are a helpful assistant. Answer in a few words.", q);
        async move { model.complete(&request).await.unwrap().text }
    }))
    .await;
    assert!(answers[0].contains('4'), "{answers:?}");
    assert!(answers[1].to_lowercase().contains("blue"), "{answers:?}");
    assert!(answers[2].contains('7') || answers[2].to_lowercase().contains("seven"), "{answers:?}");
    assert!(model.stats().max_sequences_in_batch >= 2, "{:?}", model.stats());
}

#[tokio::test]
async fn a_caller_that_goes_away_frees_its_sequence() {
    let model = load(1, 2);
    let mut long = ask("You are a helpful assistant.", "Write a long story about a lighthouse keeper.");
    long.max_tokens = Some(1000);
    let mut stream = model.stream(&long).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    // The only sequence is free again: the next answer does not wait for 1000 tokens.
    let started = std::time::Instant::now();
    let response = model.complete(&ask("Answer in one word.", "What is the capital of Italy?")).await.unwrap();
    assert!(response.text.contains("Rome"), "{:?}", response.text);
    assert!(model.stats().completion_tokens < 200, "{:?} after {:?}", model.stats(), started.elapsed());
}

#[tokio::test]
async fn a_full_queue_is_refused_as_rate_limited() {
    let model = load(1, 1);
    let mut long = ask("You are a helpful assistant.", "Write a long story about a lighthouse keeper.");
    long.max_tokens = Some(400);
    let mut running = model.stream(&long).await.unwrap();
    assert!(running.next().await.unwrap().is_ok(), "the first request holds the only sequence");
    let _waiting = model.stream(&long).await.unwrap();
    let err = model.stream(&long).await.err().expect("the queue is full");
    assert!(matches!(err, LlmError::RateLimited { .. }), "{err:?}");
    drop(running);
    drop(_waiting);
    // The engine frees both sequences at its next step; until then the queue may still be full.
    let retry = ask("Answer in one word.", "What is 3 + 3?");
    for _ in 0..100 {
        match model.stream(&retry).await {
            Ok(stream) => return assert!(collect(stream).await.is_ok()),
            Err(LlmError::RateLimited { .. }) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the queue never drained");
}

#[test]
fn a_missing_file_says_how_to_get_it() {
    let config = LocalModelConfig { path: "models/nope.gguf".into(), ..LocalModelConfig::default() };
    let err = LocalModel::load(config).unwrap_err().to_string();
    assert!(err.contains("models/nope.gguf") && err.contains("scripts/fetch-models"), "{err}");
}

#[test]
fn bad_settings_are_refused_by_name() {
    for (config, key) in [
        (LocalModelConfig { sequences: 0, ..LocalModelConfig::default() }, "sequences"),
        (LocalModelConfig { context_tokens: 10, ..LocalModelConfig::default() }, "context_tokens"),
        (LocalModelConfig { queue: 0, ..LocalModelConfig::default() }, "queue"),
        (LocalModelConfig { batch_tokens: 1, ..LocalModelConfig::default() }, "batch_tokens"),
    ] {
        let err = LocalModel::load(config).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[tokio::test]
async fn counts_a_request_exactly_as_it_will_be_run() {
    use concierge_llm::TokenCounter;
    let model = shared();
    let request = ask("You are a helpful assistant. Answer in one word.", "What is the capital of Spain?");
    let counted = model.count_request(&request) as u64;
    let response = model.complete(&request).await.unwrap();
    assert_eq!(counted, response.usage.unwrap().prompt_tokens);
    assert!(model.count("<|im_start|>") > 1, "markers in text are plain text, not one special token");
}
