"""The peer of the serving benchmark: the same three routes as Concierge's, the way a team
would write them with FastAPI, sse-starlette and uvicorn: open a conversation, follow it as
server-sent events, post a message (stored in memory with its time, followed by a reply, each
told to the conversation's followers). It does less than Concierge (no database, no agent),
so what it costs is a floor for a Python service doing this work.

Usage: python peer_sse.py PORT
"""

import asyncio
import json
import sys
import uuid
from datetime import datetime, timezone

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

app = FastAPI()
conversations: dict[str, list[dict]] = {}
followers: dict[str, set[asyncio.Queue]] = {}


class PostMessage(BaseModel):
    content: str


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def tell(conversation: str, message: dict) -> None:
    for queue in followers.get(conversation, ()):
        queue.put_nowait(message)


@app.post("/v1/conversations", status_code=201)
async def create_conversation():
    conversation = str(uuid.uuid4())
    conversations[conversation] = []
    return {"id": conversation, "created_at": now()}


@app.get("/v1/conversations/{conversation}/events")
async def follow(conversation: str):
    if conversation not in conversations:
        raise HTTPException(404)
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)
    followers.setdefault(conversation, set()).add(queue)

    async def events():
        try:
            while True:
                message = await queue.get()
                yield {"event": "message", "data": json.dumps(message)}
        finally:
            followers[conversation].discard(queue)

    return EventSourceResponse(events(), ping=15)


@app.post("/v1/conversations/{conversation}/messages")
async def post_message(conversation: str, body: PostMessage):
    if conversation not in conversations:
        raise HTTPException(404)
    question = {"id": str(uuid.uuid4()), "role": "user", "content": body.content, "created_at": now()}
    conversations[conversation].append(question)
    tell(conversation, question)
    reply = {"id": str(uuid.uuid4()), "role": "assistant", "content": "Let me check that.", "created_at": now()}
    conversations[conversation].append(reply)
    tell(conversation, reply)
    return {"message": question, "reply": reply}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", backlog=16384)
