//! The names of the metrics every crate records (through the `metrics` facade) and the
//! server exports at `/metrics`, in one place so that a dashboard and the code agree.

/// Requests answered, by `route` (as declared), `method` and `status`.
pub const HTTP_REQUESTS: &str = "concierge_http_requests_total";
/// Time to answer a request, by `route`.
pub const HTTP_SECONDS: &str = "concierge_http_request_duration_seconds";
/// Turns answered, by `outcome` (`resolved`, `escalated`, `open`), `answered_by` and `intent`.
pub const TURNS: &str = "concierge_turns_total";
/// Time from a customer's message to its stored reply, by `outcome`.
pub const TURN_SECONDS: &str = "concierge_turn_duration_seconds";
/// Time from a streamed message to its first token.
pub const TTFT_SECONDS: &str = "concierge_time_to_first_token_seconds";
/// Time spent in one stage of a turn, by `stage`: `router`, `retrieval`, `tool`, `llm`.
pub const STAGE_SECONDS: &str = "concierge_stage_duration_seconds";
/// Tokens a model read or wrote, by `model`, `tenant` and `kind` (`prompt`, `completion`).
pub const LLM_TOKENS: &str = "concierge_llm_tokens_total";
/// What models cost, in millionths of the price table's currency, by `model` and `tenant`.
pub const LLM_COST_MICROS: &str = "concierge_llm_cost_micros_total";
/// Response-cache lookups, by `result` (`hit`, `miss`).
pub const LLM_CACHE_LOOKUPS: &str = "concierge_llm_cache_lookups_total";
/// A provider's circuit breaker, by `provider`: 0 closed, 1 half-open, 2 open.
pub const LLM_BREAKER_STATE: &str = "concierge_llm_breaker_state";
/// Jobs waiting in the queue.
pub const JOBS_QUEUE_DEPTH: &str = "concierge_jobs_queue_depth";
/// Ratings of replies, by `rating` (`up`, `down`).
pub const FEEDBACK: &str = "concierge_feedback_total";
/// 1 while rate limits are kept in memory because Redis does not answer.
pub const RATE_LIMIT_FALLBACK: &str = "concierge_rate_limit_redis_fallback";
/// Requests refused with 429.
pub const RATE_LIMITED: &str = "concierge_rate_limited_total";
/// Personal data replaced, by `kind` and `place` (`stored`, `reply`).
pub const PII_REDACTED: &str = "concierge_pii_redacted_total";
/// Text that read as prompt injection, by `channel` (`customer`, `passage`, `tool_result`)
/// and `action` (`refused`, `flagged`, `withheld`).
pub const INJECTIONS: &str = "concierge_prompt_injections_total";
/// Model answers held back by the output check, by `reason`.
pub const OUTPUT_BLOCKED: &str = "concierge_output_blocked_total";

/// Every name above.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_SECONDS,
    TURNS,
    TURN_SECONDS,
    TTFT_SECONDS,
    STAGE_SECONDS,
    LLM_TOKENS,
    LLM_COST_MICROS,
    LLM_CACHE_LOOKUPS,
    LLM_BREAKER_STATE,
    JOBS_QUEUE_DEPTH,
    FEEDBACK,
    RATE_LIMIT_FALLBACK,
    RATE_LIMITED,
    PII_REDACTED,
    INJECTIONS,
    OUTPUT_BLOCKED,
];
