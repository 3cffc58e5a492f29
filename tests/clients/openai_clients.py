"""The OpenAI-compatible API as real clients use it: the official `openai` package and
LangChain's `ChatOpenAI`, each non-streaming and streaming, against a running Concierge.

Usage: CONCIERGE_API_KEY=KEY python openai_clients.py BASE_URL MODEL
KEY is a key the server accepts with at least the operator role (the admin key will do).
Prints one line per check and exits non-zero on the first failure.
"""

import os
import sys

from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI
from openai import AuthenticationError, NotFoundError, OpenAI

BASE, MODEL = sys.argv[1].rstrip("/") + "/v1", sys.argv[2]
API_KEY = os.environ.get("CONCIERGE_API_KEY", "").strip()
if not API_KEY:
    sys.exit("CONCIERGE_API_KEY is not set: give a key the server accepts (e.g. its CONCIERGE_ADMIN_KEY)")
QUESTION = "Where is my order A-10032?"
TRACKING = "4833351328"


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + (f": {detail}" if detail and not condition else ""))
    if not condition:
        sys.exit(1)


def error_code(error):
    """The server's error code in an SDK error: the SDK keeps the body's `error` object (or
    the whole body) as `body`, and the code as `code`."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("code"):
            return inner["code"]
    return getattr(error, "code", None)


client = OpenAI(base_url=BASE, api_key=API_KEY)

# The real key with its last character changed: the shape of a key, not its value.
forged = API_KEY[:-1] + ("A" if API_KEY[-1] != "A" else "B")
try:
    OpenAI(base_url=BASE, api_key=forged, max_retries=0).models.list()
    check("openai: a forged key is refused", False)
except AuthenticationError as error:
    check("openai: a forged key is refused with 401", error.status_code == 401, str(error.status_code))
    check("openai: the refusal says invalid_credentials", error_code(error) == "invalid_credentials", repr(error.body))

models = [m.id for m in client.models.list()]
check("openai: models.list names the agent", MODEL in models, str(models))

raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}])
completion = raw.parse()
answer = completion.choices[0].message.content
check("openai: a completion answers from the backend", TRACKING in answer, answer)
check("openai: finish_reason is stop", completion.choices[0].finish_reason == "stop")
check("openai: usage is reported", completion.usage is not None and completion.usage.total_tokens >= 0)
conversation = raw.headers.get("x-conversation-id")
check("openai: the conversation id comes back", bool(conversation))

followup = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "How do I reset my password?"}],
    extra_headers={"x-conversation-id": conversation},
)
check("openai: a follow-up in the same conversation is answered", bool(followup.choices[0].message.content))

stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": QUESTION}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
streamed = "".join(pieces)
check("openai: a stream assembles into the answer", TRACKING in streamed, streamed)
check("openai: the stream ends with stop and usage", finish == "stop" and usage is not None)

try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    check("openai: an unknown model is refused", False)
except NotFoundError as error:
    check("openai: an unknown model is refused with 404", error.status_code == 404)

chat = ChatOpenAI(model=MODEL, base_url=BASE, api_key=API_KEY, max_retries=0, timeout=120)
reply = chat.invoke([HumanMessage("Hi, I need help with an order."), AIMessage("Sure, which order?"), HumanMessage(QUESTION)])
check("langchain: invoke answers", TRACKING in reply.content, reply.content)
check("langchain: usage metadata is present", reply.usage_metadata is not None)

streamed = "".join(part.content for part in chat.stream(QUESTION))
check("langchain: stream assembles into the answer", TRACKING in streamed, streamed)

print("all client checks passed")
