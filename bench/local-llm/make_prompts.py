#!/usr/bin/env python3
"""Builds prompts.json, the message lists both sides of the local-model benchmark are given.

Everything comes from the Acme demo: the tools declared in examples/acme/concierge.toml and
the help-centre articles in examples/acme/kb. Passages are cut to a token budget with the
model's own tokenizer and chat template (llama-cpp-python, vocabulary only), so the
sizes in the fixture are the sizes the model sees.

    bench/local-llm/.venv/bin/python bench/local-llm/make_prompts.py

The output is checked in; run this again only to change the workload.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

from peer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODEL = ROOT / "models" / "qwen2.5-coder-0.5b-instruct-q8_0-mix.gguf"

MAX_TOKENS = 128

# Tokens of the passage and question after the shared prefix (system prompt + tools).
SUPPORT_SUFFIX_TOKENS = 440
# Tokens of the whole single-stream prompt.
LONG_PROMPT_TOKENS = 830

SUPPORT_TOOLS = ["get_order", "loyalty_balance"]

SYSTEM_PROMPT = (
    "You are Concierge, the customer-support assistant of Acme, an online shop for coffee "
    "grinders, kettles, headphones, fitness trackers and smart-home hubs. Answer from the "
    "help-centre article in the customer's message, with the exact steps, time frames and "
    "amounts it states; if it does not cover the question, say so and offer to open a "
    "ticket. Call a tool only when the customer gives an order number (like A-10024) or a "
    "customer number (like C-1001). Never promise a refund or a delivery date that the "
    "article does not support."
)

# (article, question): the questions ask for a full answer so that the model writes on.
SUPPORT_CASES = [
    ("refund-timing-and-methods", "I returned my grinder last week and paid with PayPal. Explain in detail, step by step, when the refund is issued and how long each step takes until I see the money."),
    ("kettle-troubleshooting", "My kettle switches off before the water boils and sometimes shows an error light. Walk me through every troubleshooting step in order, explaining what each one checks."),
    ("hub-setup-guide", "I just bought the smart-home hub. Explain the whole setup from unboxing to adding my first device, step by step, with what I should see after each step."),
    ("delayed-or-lost-packages", "My package was due three days ago and tracking has not moved. Explain in detail what I should do now, what Acme does, and how long each stage takes."),
    ("grinder-troubleshooting", "My grinder is making a loud noise and the grounds are uneven. Explain every step I should try, in order, and what each step fixes."),
    ("password-reset", "I can't log in and the reset email never arrives. Explain everything I can try, step by step, and what to do if none of it works."),
    ("warranty-claim-process", "My headphones stopped charging after eight months. Explain the warranty claim process in detail, step by step, including what I need to send and how long it takes."),
    ("international-shipping-and-customs", "I'm ordering a kettle to Canada. Explain in detail how international shipping works, who pays customs duties, and how long delivery takes, step by step."),
    ("headphones-troubleshooting", "One side of my headphones has no sound and the connection keeps dropping. Walk me through every fix in order and explain what each one does."),
    ("tracker-troubleshooting", "My fitness tracker stopped syncing and the battery drains in a day. Explain each troubleshooting step in detail, in the order I should try them."),
]

LONG_ARTICLE = "hub-troubleshooting"
LONG_INSTRUCTION = (
    "Rewrite the following help-centre article as a detailed FAQ for Acme's support team: "
    "at least twelve questions a customer might ask, each followed by a complete answer of "
    "several sentences that quotes the exact steps, settings and time frames.\n\n"
)


def load_tools():
    config = tomllib.loads((ROOT / "examples" / "acme" / "concierge.toml").read_text())
    by_name = {tool["name"]: tool for tool in config["tools"]}
    return [
        {"name": name, "description": by_name[name]["description"], "parameters": by_name[name]["parameters"]}
        for name in SUPPORT_TOOLS
    ]


def article(slug):
    text = (ROOT / "examples" / "acme" / "kb" / f"{slug}.md").read_text()
    front, body = re.match(r"\+\+\+\n(.*?)\n\+\+\+\n(.*)", text, re.S).groups()
    title = tomllib.loads(front)["title"]
    return title, body.strip()


def cut(counter, text, budget):
    """The longest run of whole paragraphs from the start of `text` within `budget` tokens."""
    kept = []
    for paragraph in text.split("\n\n"):
        if counter.count("\n\n".join(kept + [paragraph])) > budget:
            break
        kept.append(paragraph)
    return "\n\n".join(kept)


def support_request(counter, tools, slug, question, prefix_tokens):
    title, body = article(slug)
    ask = f"\n\nMy question: {question}"
    head = f"Here is the help-centre article that matches my question.\n\n# {title}\n\n"
    # The template adds a few tokens around the user turn; leave room for them.
    budget = SUPPORT_SUFFIX_TOKENS - counter.count(head + ask) - 12
    passage = cut(counter, body, budget)
    request = {
        "name": slug,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": head + passage + ask},
        ],
        "tools": tools,
        "max_tokens": MAX_TOKENS,
    }
    total = len(counter.prompt(request))
    request["prompt_tokens"] = total
    request["shared_prefix_tokens"] = prefix_tokens
    return request


def long_requests(counter):
    title, body = article(LONG_ARTICLE)
    requests = []
    for n in range(1, 4):
        system = f"Request {n} of 3. You are a technical writer on Acme's support team."
        head = f"{LONG_INSTRUCTION}# {title}\n\n"
        budget = LONG_PROMPT_TOKENS - counter.count(system + head) - 14
        request = {
            "name": f"long-{n}",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": head + cut(counter, body, budget)},
            ],
            "tools": [],
            "max_tokens": MAX_TOKENS,
        }
        request["prompt_tokens"] = len(counter.prompt(request))
        requests.append(request)
    return requests


def shared_prefix(counter, requests):
    token_lists = [counter.prompt(r) for r in requests]
    first = token_lists[0]
    n = min(len(t) for t in token_lists)
    for other in token_lists[1:]:
        n = min(n, next((i for i, (a, b) in enumerate(zip(first, other)) if a != b), n))
    return n


def limit(request, max_tokens):
    return {**request, "max_tokens": max_tokens}


def main():
    counter = Tokenizer(str(MODEL))
    tools = load_tools()
    probe = [
        {"messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}], "tools": tools}
        for _, q in SUPPORT_CASES[:2]
    ]
    prefix = shared_prefix(counter, probe)
    support = [support_request(counter, tools, slug, q, prefix) for slug, q in SUPPORT_CASES]
    fixture = {
        "about": "Generated by make_prompts.py from examples/acme; both sides of the benchmark send these requests unchanged.",
        "model": "models/qwen2.5-coder-0.5b-instruct-q8_0-mix.gguf",
        "max_tokens": MAX_TOKENS,
        "shared_prefix_tokens": prefix,
        # Single stream: a long prompt that shares nothing with the request before it.
        "long": long_requests(counter),
        # Time to first token: each pair is a warm-up with the shared prefix, then the
        # measured request with the same prefix and a different article and question,
        # answered with one token: the prompt evaluation and the first token, timed the
        # same way on both sides whether the token starts prose or a tool call (which
        # Concierge does not stream as text).
        "ttft": [{"warmup": limit(support[2 * i], 16), "measure": limit(support[2 * i + 1], 1)} for i in range(3)],
        # Four conversations at once.
        "concurrent": support[6:10],
    }
    out = HERE / "prompts.json"
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    sizes = {r["name"]: r["prompt_tokens"] for r in fixture["long"] + support}
    print(f"wrote {out}: shared prefix {prefix} tokens; prompt tokens {sizes}", file=sys.stderr)


if __name__ == "__main__":
    main()
