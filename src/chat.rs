//! `concierge chat`: a terminal conversation with a running Concierge over its HTTP API.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ChatArgs {
    /// Base URL of the Concierge server.
    #[arg(long, env = "CONCIERGE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Your customer id at the company (e.g. C-1001), if you want to give it.
    #[arg(long)]
    customer: Option<String>,
    /// The API key to call with (a widget key is enough; `concierge demo` prints one).
    #[arg(long, env = "CONCIERGE_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// An open conversation: its id and the token that lets a widget key reach it.
struct Opened {
    id: String,
    token: String,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let client = crate::api_client(args.key.as_deref(), std::time::Duration::from_secs(120))?;
    let base = args.url.trim_end_matches('/').to_owned();
    let interactive = std::io::stdin().is_terminal();
    let mut conversation = start(&client, &base, args.customer.as_deref()).await?;
    if interactive {
        let id = &conversation.id;
        println!("Connected to {base}. Conversation {id}. Type /new for a new conversation, /quit to leave.");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading the terminal")?;
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/new" => {
                conversation = start(&client, &base, args.customer.as_deref()).await?;
                println!("(new conversation {})", conversation.id);
            }
            text => match send(&client, &base, &conversation, text).await {
                Ok(reply) => print_reply(&reply),
                // A refused message is shown and the session goes on.
                Err(e) => eprintln!("error: {e:#}"),
            },
        }
    }
    Ok(())
}

async fn start(client: &reqwest::Client, base: &str, customer: Option<&str>) -> anyhow::Result<Opened> {
    let body = json!({ "channel": "chat-cli", "customer_ref": customer });
    let response = client.post(format!("{base}/v1/conversations")).json(&body).send().await.with_context(|| {
        format!("cannot reach Concierge at {base} (is `concierge serve` or `concierge demo` running?)")
    })?;
    let value = checked(response).await?;
    let text = |field: &str| value[field].as_str().map(str::to_owned);
    let id = text("id").context("the server's answer has no conversation id")?;
    Ok(Opened { id, token: text("access_token").unwrap_or_default() })
}

async fn send(client: &reqwest::Client, base: &str, conversation: &Opened, text: &str) -> anyhow::Result<Value> {
    let response = client
        .post(format!("{base}/v1/conversations/{}/messages", conversation.id))
        .header("x-conversation-token", &conversation.token)
        .json(&json!({ "content": text }))
        .send()
        .await
        .context("sending the message")?;
    checked(response).await
}

/// The JSON body of a successful answer, or the server's error code and message.
async fn checked(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let value: Value = response.json().await.context("the server's answer is not JSON")?;
    if !status.is_success() {
        let error = &value["error"];
        bail!("{} ({}): {}", status, error["code"].as_str().unwrap_or("?"), error["message"].as_str().unwrap_or(""));
    }
    Ok(value)
}

fn print_reply(exchange: &Value) {
    let reply = &exchange["reply"];
    println!("concierge> {}", reply["content"].as_str().unwrap_or(""));
    if let Some(citations) = reply["metadata"]["citations"].as_array() {
        for c in citations {
            let url = c["url"].as_str().unwrap_or("");
            println!(
                "  [{}] {} — {} {url}",
                c["n"],
                c["title"].as_str().unwrap_or(""),
                c["section"].as_str().unwrap_or("")
            );
        }
    }
}
