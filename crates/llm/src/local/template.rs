//! The model's own chat template, rendered with minijinja.
//!
//! GGUF files carry the Jinja template the model was trained with
//! (`tokenizer.chat_template`). Rendering it ourselves, rather than with llama.cpp's
//! built-in approximations, keeps tool definitions, tool calls and tool replies exactly in
//! the shape the model has seen.

use minijinja::{Environment, ErrorKind, Value as JinjaValue};
use serde::Serialize;
use serde_json::{json, Value};

use crate::openai::{message_json, Arguments};
use crate::types::{ChatMessage, ToolDefinition};

const TEMPLATE_NAME: &str = "chat";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a template that does not parse is refused here, not at the first
    /// request.
    pub fn new(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", python_tojson);
        env.add_function("raise_exception", raise_exception);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned()).map_err(|e| e.to_string())?;
        Ok(Self { env })
    }

    /// The prompt for `messages` and `tools`, ending with the opening of the assistant's
    /// turn so the model continues from there.
    pub fn render(&self, messages: &[ChatMessage], tools: &[ToolDefinition]) -> Result<String, String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| e.to_string())?;
        let messages: Vec<Value> = messages.iter().map(|m| message_json(m, Arguments::Object)).collect();
        let tools: Vec<Value> = tools.iter().map(tool_value).collect();
        let context = TemplateContext {
            messages,
            tools: (!tools.is_empty()).then_some(tools),
            add_generation_prompt: true,
            bos_token: "",
            eos_token: "",
        };
        template.render(context).map_err(|e| e.to_string())
    }
}

#[derive(Serialize)]
struct TemplateContext {
    messages: Vec<Value>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
    bos_token: &'static str,
    eos_token: &'static str,
}

fn tool_value(tool: &ToolDefinition) -> Value {
    json!({
        "type": "function",
        "function": { "name": tool.name, "description": tool.description, "parameters": tool.parameters },
    })
}

/// `tojson` as the templates were written for: Python's `json.dumps`, with `", "` and
/// `": "` separators and no HTML escaping (minijinja's own filter escapes `<` and `>`,
/// which would show the model text it never saw in training).
fn python_tojson(value: JinjaValue) -> Result<JinjaValue, minijinja::Error> {
    let value: Value = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut serializer)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(JinjaValue::from_safe_string(String::from_utf8(out).expect("serde_json writes UTF-8")))
}

fn raise_exception(message: String) -> Result<JinjaValue, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// serde_json's compact output with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    /// A ChatML template in the shape of Qwen's, written for these tests.
    const CHATML_WITH_TOOLS: &str = r#"{%- if tools %}<|im_start|>system
{{ messages[0]['content'] if messages[0]['role'] == 'system' else 'Default.' }}
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' and tools %}{% continue %}{% endif %}
{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content.strip() }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

    fn order_tool() -> ToolDefinition {
        ToolDefinition {
            name: "get_order".into(),
            description: "Look up an order <by id>".into(),
            parameters: json!({"type": "object", "properties": {"order_id": {"type": "string"}}}),
        }
    }

    #[test]
    fn renders_tools_as_python_json_without_html_escapes() {
        let template = ChatTemplate::new(CHATML_WITH_TOOLS).unwrap();
        let prompt = template
            .render(&[ChatMessage::system("Be brief."), ChatMessage::user("  Where is A-1?  ")], &[order_tool()])
            .unwrap();
        assert!(prompt.starts_with("<|im_start|>system\nBe brief.\n<tools>{"), "{prompt}");
        assert!(prompt.contains(r#"{"function": {"description": "Look up an order <by id>", "name": "get_order""#));
        assert!(prompt.contains("<|im_start|>user\nWhere is A-1?<|im_end|>\n"), "pycompat strip: {prompt}");
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn renders_tool_calls_and_their_results() {
        let template = ChatTemplate::new(CHATML_WITH_TOOLS).unwrap();
        let mut call = ChatMessage::assistant("");
        call.tool_calls =
            vec![ToolCall { id: "c1".into(), name: "get_order".into(), arguments: json!({"order_id": "A-1"}) }];
        let prompt = template
            .render(
                &[ChatMessage::user("Where is A-1?"), call, ChatMessage::tool_result("c1", r#"{"status":"shipped"}"#)],
                &[order_tool()],
            )
            .unwrap();
        assert!(prompt
            .contains("<tool_call>\n{\"name\": \"get_order\", \"arguments\": {\"order_id\": \"A-1\"}}\n</tool_call>"));
        assert!(prompt.contains("<tool_response>\n{\"status\":\"shipped\"}\n</tool_response>"));
    }

    #[test]
    fn a_template_that_does_not_parse_is_refused_up_front() {
        assert!(ChatTemplate::new("{% for m in messages %}no end").is_err());
    }

    #[test]
    fn raise_exception_surfaces_as_a_render_error() {
        let template = ChatTemplate::new("{{ raise_exception('only user and assistant roles') }}").unwrap();
        let err = template.render(&[ChatMessage::user("hi")], &[]).unwrap_err();
        assert!(err.contains("only user and assistant roles"), "{err}");
    }
}
