//! Tool calls in a local model's text: the Hermes format (`<tool_call>{…}</tool_call>`, as
//! Qwen's template asks for) and the bare JSON object small models often write instead.
//!
//! Parsing only finds the calls; `http::validated_tool_call` then checks the name against
//! the offered tools, exactly as for remote providers.

use serde_json::Value;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// A call as the model wrote it: a name and its arguments, which may still be a string.
#[derive(Debug, Clone, PartialEq)]
pub struct RawToolCall {
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// The model's output split into what it said and what it called.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedOutput {
    pub text: String,
    pub calls: Vec<RawToolCall>,
    /// Why a `<tool_call>` block could not be read as a call, for the first such block.
    pub malformed: Option<String>,
}

/// Splits `output` into text and tool calls. Tagged blocks win; without tags, an output
/// that is nothing but a JSON call (an object, an array of objects, or either inside a
/// fenced code block) is taken as the call. A final block the model left unclosed when it
/// stopped is still read.
pub fn parse_tool_calls(output: &str) -> ParsedOutput {
    if output.contains(OPEN) {
        return parse_tagged(output);
    }
    let body = strip_code_fence(output.trim());
    if body.starts_with('{') || body.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<Value>(body) {
            if let Some(calls) = calls_from_value(&value) {
                return ParsedOutput { text: String::new(), calls, malformed: None };
            }
        }
    }
    if let Some((at, end, calls)) = embedded_call(output) {
        let before = output[..at].trim_end().trim_end_matches(|c: char| c == '`' || c.is_ascii_alphanumeric());
        let text = format!("{} {}", before.trim(), output[end..].trim().trim_start_matches('`').trim());
        return ParsedOutput { text: text.trim().to_owned(), calls, malformed: None };
    }
    ParsedOutput { text: output.trim().to_owned(), ..ParsedOutput::default() }
}

/// A call written inside prose ("Here is the call: {…}"): the first JSON object in the text
/// that has both `name` and `arguments`, with where it starts and ends.
fn embedded_call(output: &str) -> Option<(usize, usize, Vec<RawToolCall>)> {
    output.match_indices('{').find_map(|(at, _)| {
        let mut values = serde_json::Deserializer::from_str(&output[at..]).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let end = at + values.byte_offset();
        let object = value.as_object()?;
        if !(object.contains_key("name") && object.contains_key("arguments")) {
            return None;
        }
        Some((at, end, vec![call_from_object(&value)?]))
    })
}

fn parse_tagged(output: &str) -> ParsedOutput {
    let mut parsed = ParsedOutput::default();
    let mut text = String::new();
    let mut rest = output;
    while let Some(start) = rest.find(OPEN) {
        text.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let (body, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(strip_code_fence(body.trim())).ok().and_then(|v| calls_from_value(&v)) {
            Some(calls) => parsed.calls.extend(calls),
            None => {
                parsed
                    .malformed
                    .get_or_insert_with(|| format!("a <tool_call> block is not a JSON call: {}", body.trim()));
            }
        }
        rest = next;
    }
    text.push_str(rest);
    parsed.text = text.trim().to_owned();
    parsed
}

/// `{"name": …, "arguments": …}` (or `parameters`), or an array of those.
fn calls_from_value(value: &Value) -> Option<Vec<RawToolCall>> {
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(call_from_object).collect(),
        Value::Object(_) => call_from_object(value).map(|call| vec![call]),
        _ => None,
    }
}

fn call_from_object(value: &Value) -> Option<RawToolCall> {
    let object = value.as_object()?;
    let name = object.get("name")?.as_str()?.to_owned();
    let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
        None => "{}".to_owned(),
        // Some models write the arguments as a JSON string, as the OpenAI wire format does.
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    Some(RawToolCall { name, arguments })
}

fn strip_code_fence(text: &str) -> &str {
    let Some(inner) = text.strip_prefix("```") else { return text };
    let inner = inner.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

/// Decides, while text streams in, how much of it can be shown as text now. Text that may
/// turn out to be a tool call is held back until the answer ends.
#[derive(Debug, Default)]
pub struct StreamSplitter {
    output: String,
    shown: usize,
    holding: bool,
}

impl StreamSplitter {
    /// Adds `piece` and returns the text that is now safe to show, if any.
    pub fn push(&mut self, piece: &str, tools_offered: bool) -> Option<String> {
        self.output.push_str(piece);
        if !tools_offered {
            return self.release(self.output.len());
        }
        if self.holding {
            return None;
        }
        let trimmed = self.output.trim_start();
        if trimmed.starts_with('[') {
            self.holding = true;
            return None;
        }
        // A call may open with its tag, a JSON object or a code fence, wherever it starts.
        let opening = [OPEN, "{", "```"].iter().filter_map(|mark| self.output[self.shown..].find(mark)).min();
        if let Some(at) = opening {
            self.holding = true;
            return self.release(self.shown + at);
        }
        // Keep back a tail that could be the start of `<tool_call>` or a fence.
        let keep = [OPEN, "```"]
            .iter()
            .filter_map(|mark| (1..mark.len()).rev().find(|&n| self.output.ends_with(&mark[..n])))
            .max()
            .unwrap_or(0);
        let safe = if trimmed.is_empty() { self.shown } else { self.output.len() - keep };
        self.release(safe)
    }

    fn release(&mut self, upto: usize) -> Option<String> {
        if upto <= self.shown {
            return None;
        }
        let text = self.output[self.shown..upto].to_owned();
        self.shown = upto;
        Some(text)
    }

    /// The whole output and how much of it was already shown as text.
    pub fn finish(self) -> (String, usize) {
        (self.output, self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hermes_tagged_calls_with_surrounding_text() {
        let out = parse_tool_calls(
            "Let me check.\n<tool_call>\n{\"name\": \"get_order\", \"arguments\": {\"order_id\": \"A-1\"}}\n</tool_call>",
        );
        assert_eq!(out.text, "Let me check.");
        assert_eq!(
            out.calls,
            vec![RawToolCall { name: "get_order".into(), arguments: r#"{"order_id":"A-1"}"#.into() }]
        );
        assert!(out.malformed.is_none());
    }

    #[test]
    fn reads_parallel_calls_and_an_unclosed_last_block() {
        let out = parse_tool_calls(
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": 1}}",
        );
        let names: Vec<_> = out.calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(out.text, "");
    }

    #[test]
    fn reads_bare_json_fenced_json_arrays_and_string_arguments() {
        let bare = parse_tool_calls("{\"name\": \"get_order\", \"arguments\": {\"order_id\": \"A-1\"}}");
        assert_eq!(bare.calls[0].name, "get_order");
        let fenced =
            parse_tool_calls("```json\n{\"name\": \"get_order\", \"parameters\": {\"order_id\": \"A-1\"}}\n```");
        assert_eq!(fenced.calls[0].arguments, r#"{"order_id":"A-1"}"#);
        let array = parse_tool_calls(r#"[{"name": "a"}, {"name": "b", "arguments": "{\"x\": 1}"}]"#);
        assert_eq!(array.calls[0].arguments, "{}");
        assert_eq!(array.calls[1].arguments, r#"{"x": 1}"#);
    }

    #[test]
    fn reads_a_call_written_inside_prose() {
        let out = parse_tool_calls(
            "To find your order, I'll call get_order:\n\n```json\n{\"name\": \"get_order\", \"arguments\": {\"order_id\": \"A-1\"}}\n```\nOne moment.",
        );
        assert_eq!(out.calls[0].name, "get_order");
        assert_eq!(out.text, "To find your order, I'll call get_order:\n\n One moment.".replace("\n\n ", " "));
        let no_call = parse_tool_calls("Sizes run {small} to {large}.");
        assert!(no_call.calls.is_empty());
    }

    #[test]
    fn json_that_is_not_a_call_stays_text() {
        let out = parse_tool_calls(r#"{"answer": 42}"#);
        assert!(out.calls.is_empty());
        assert_eq!(out.text, r#"{"answer": 42}"#);
        let prose = parse_tool_calls("Your order shipped on Monday.");
        assert_eq!(prose.text, "Your order shipped on Monday.");
    }

    #[test]
    fn a_tagged_block_that_is_not_a_call_is_reported() {
        let out = parse_tool_calls("<tool_call>\nget_order(A-1)\n</tool_call>");
        assert!(out.calls.is_empty());
        assert!(out.malformed.unwrap().contains("get_order(A-1)"));
    }

    #[test]
    fn the_splitter_streams_prose_and_holds_back_calls() {
        let mut splitter = StreamSplitter::default();
        let mut shown = String::new();
        for piece in ["Let ", "me check.", "\n<tool", "_call>\n{\"name\"", ": \"a\"}"] {
            if let Some(text) = splitter.push(piece, true) {
                shown.push_str(&text);
            }
        }
        assert_eq!(shown, "Let me check.\n");
        let mut prose = StreamSplitter::default();
        assert_eq!(prose.push("Here it is: ``", true).as_deref(), Some("Here it is: "));
        assert_eq!(prose.push("`json\n{", true), None);
        assert_eq!(prose.finish().1, "Here it is: ".len());
        let (output, at) = splitter.finish();
        assert_eq!(at, shown.len());
        assert!(output[at..].starts_with("<tool_call>"));
    }

    #[test]
    fn the_splitter_holds_an_answer_that_opens_like_json() {
        let mut splitter = StreamSplitter::default();
        assert_eq!(splitter.push(" ", true), None);
        assert_eq!(splitter.push("{\"name\"", true).as_deref(), Some(" "));
        assert_eq!(splitter.push(": \"a\"}", true), None);
        assert_eq!(splitter.finish().1, 1);
    }

    #[test]
    fn without_tools_everything_streams() {
        let mut splitter = StreamSplitter::default();
        assert_eq!(splitter.push("{\"a\"", false).as_deref(), Some("{\"a\""));
        assert_eq!(splitter.push("<tool_call>", false).as_deref(), Some("<tool_call>"));
    }
}
