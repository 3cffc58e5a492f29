#!/usr/bin/env python3
"""The peer side of the local-model benchmark: llama-cpp-python's OpenAI-compatible server.

Starts `python -m llama_cpp.server` on the GGUF, waits until it answers, sends the requests
of prompts.json to /v1/chat/completions with stream=true (so the server applies the model's
own chat template to the messages and tools), stops the server and prints one JSON object
with the same shape as `local_bench` prints for Concierge.

    bench/local-llm/.venv/bin/python bench/local-llm/peer.py [--threads 2] [--port 8765]

Token counts: a stream carries no usage, so the driver tokenizes with the same library the
server runs (vocabulary only): the prompt as the server renders it, and the answer (an
answer cut at max_tokens has exactly max_tokens tokens). Prompt tokens the server evaluated
are the prompt minus its longest common prefix with the previous prompt, which is what
llama-cpp-python reuses from its single context.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixture", default=str(HERE / "prompts.json"))
    p.add_argument("--model", default=None, help="GGUF file (default: the fixture's model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--server-log", default=str(HERE / "out" / "peer-server.log"))
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more llama_cpp.server options")
    return p.parse_args()


class Tokenizer:
    """The model's chat template and tokenizer, as llama-cpp-python's server uses them."""

    def __init__(self, model):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = Llama(model_path=model, vocab_only=True, verbose=False)
        self.formatter = Jinja2ChatFormatter(
            template=self.llama.metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token=""
        )

    def prompt(self, request):
        rendered = self.formatter(messages=request["messages"], tools=openai_tools(request) or None).prompt
        return self.llama.tokenize(rendered.encode(), add_bos=False, special=True)

    def count(self, text):
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False))


def openai_tools(request):
    tools = [{"type": "function", "function": tool} for tool in request.get("tools", [])]
    # Concierge's template renders JSON objects with their keys sorted (serde_json's map);
    # sorted here too, the template's `tojson` writes the very same text on both sides.
    return json.loads(json.dumps(tools, sort_keys=True))


class Peer:
    def __init__(self, args, model):
        self.port = args.port
        self.command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", model,
            "--host", "127.0.0.1", "--port", str(args.port),
            "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
            "--n_ctx", str(args.ctx), "--n_batch", str(args.batch),
            # The default cancels a running stream whenever another request arrives, which
            # no server for more than one user can run with.
            "--interrupt_requests", "false",
            *args.extra,
        ]
        Path(args.server_log).parent.mkdir(parents=True, exist_ok=True)
        self.log = open(args.server_log, "w")
        self.process = None

    def start(self):
        started = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < 300:
            if self.process.poll() is not None:
                raise SystemExit(f"peer server exited with {self.process.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("peer server did not become ready within 300 s")

    def peak_rss_mib(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def stream(self, request):
        """Sends one request and times its chunks: (ttft, end, text, finish), seconds from send."""
        body = {
            "messages": request["messages"],
            "max_tokens": request["max_tokens"],
            "temperature": 0.0,
            # Greedy, as Concierge decodes at temperature 0: no repetition penalty either.
            "repeat_penalty": 1.0,
            "stream": True,
        }
        if request.get("tools"):
            body["tools"] = openai_tools(request)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        sent = time.monotonic()
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"peer answered {response.status}: {response.read()[:500]!r}")
        first = end = None
        text, finish = [], None
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            choice = json.loads(data)["choices"][0]
            delta = choice.get("delta", {}).get("content") or ""
            if delta:
                text.append(delta)
                if first is None:
                    first = time.monotonic() - sent
                end = time.monotonic() - sent
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
                end = time.monotonic() - sent
                # An answer with no text (a first token that ends it) came when it finished.
                if first is None:
                    first = end
        conn.close()
        return first, end, "".join(text), finish


class Bench:
    def __init__(self, peer, tokenizer):
        self.peer = peer
        self.tokenizer = tokenizer
        self.previous_prompt = []

    def run(self, request):
        prompt = self.tokenizer.prompt(request)
        reused = common_prefix(prompt, self.previous_prompt)
        self.previous_prompt = prompt
        ttft, end, text, finish = self.peer.stream(request)
        completion = request["max_tokens"] if finish == "length" else self.tokenizer.count(text)
        evaluated = len(prompt) - reused
        return {
            "name": request["name"],
            "prompt_tokens": len(prompt),
            "prompt_evaluated": evaluated,
            "ttft_s": ttft,
            "prompt_tok_s": evaluated / ttft if ttft else None,
            "completion_tokens": completion,
            "gen_tok_s": (completion - 1) / (end - ttft) if ttft and end > ttft and completion > 1 else None,
            "total_s": end,
            "finish": finish,
            "text": text,
        }


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def measure_long(bench, fixture):
    runs = [bench.run(request) for request in fixture["long"]]
    return {"runs": runs, "prompt_tok_s": median(runs, "prompt_tok_s"), "gen_tok_s": median(runs, "gen_tok_s")}


def measure_ttft(bench, fixture):
    runs = []
    for pair in fixture["ttft"]:
        bench.run(pair["warmup"])
        runs.append(bench.run(pair["measure"]))
    return {"runs": runs, "ttft_s": median(runs, "ttft_s")}


def measure_concurrent(peer, tokenizer, fixture):
    requests = fixture["concurrent"]
    results = [None] * len(requests)
    gate = threading.Barrier(len(requests) + 1)

    def one(i):
        gate.wait()
        results[i] = peer.stream(requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    gate.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    streams = []
    for request, (ttft, end, text, finish) in zip(requests, results):
        completion = request["max_tokens"] if finish == "length" else tokenizer.count(text)
        streams.append({"name": request["name"], "ttft_s": ttft, "end_s": end, "completion_tokens": completion,
                        "finish": finish, "text": text})
    total = sum(s["completion_tokens"] for s in streams)
    return {"streams": streams, "wall_s": wall, "completion_tokens": total, "aggregate_tok_s": total / wall}


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def version():
    from importlib.metadata import version as v

    return v("llama-cpp-python")


def main():
    args = parse_args()
    fixture = json.loads(Path(args.fixture).read_text())
    model = args.model or str(ROOT / fixture["model"])
    tokenizer = Tokenizer(model)
    peer = Peer(args, model)
    load_before = loadavg()
    try:
        load = peer.start()
        bench = Bench(peer, tokenizer)
        long = measure_long(bench, fixture)
        ttft = measure_ttft(bench, fixture)
        concurrent = measure_concurrent(peer, tokenizer, fixture)
        rss = peer.peak_rss_mib()
    finally:
        peer.stop()
    out = {
        "side": "peer",
        "engine": f"llama-cpp-python {version()} (python -m llama_cpp.server)",
        "model": model,
        "settings": {"command": " ".join(os.path.relpath(c, ROOT) if c == model else c for c in peer.command[1:]),
                     "threads": args.threads, "context_tokens": args.ctx, "batch_tokens": args.batch},
        "load_s": load,
        "long": long,
        "ttft": ttft,
        "concurrent": concurrent,
        "peak_rss_mib": rss,
        # Other work on the machine skews every number: a busy machine shows here.
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
