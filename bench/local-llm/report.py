#!/usr/bin/env python3
"""Puts the two sides of the local-model benchmark side by side.

    python3 bench/local-llm/report.py concierge.json peer.json [--out results.json]

Prints a Markdown table with the ratio Concierge / peer for every measurement and writes
both sides, the ratios and the machine to the --out file. Standard library only.
"""

import argparse
import json
import platform
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# (label, how to read it from one side's JSON, which way is better)
METRICS = [
    ("prompt tok/s, single stream (~800-token prompt)", lambda s: s["long"]["prompt_tok_s"], "higher"),
    ("generation tok/s, single stream (128 tokens)", lambda s: s["long"]["gen_tok_s"], "higher"),
    ("TTFT s, ~800-token support prompt, ~400-token prefix cached", lambda s: s["ttft"]["ttft_s"], "lower"),
    ("aggregate generation tok/s, 4 concurrent conversations", lambda s: s["concurrent"]["aggregate_tok_s"], "higher"),
    ("wall s, 4 concurrent conversations", lambda s: s["concurrent"]["wall_s"], "lower"),
    ("peak RSS MiB", lambda s: s["peak_rss_mib"], "lower"),
    ("load s", lambda s: s["load_s"], "lower"),
]


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = set()
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        pass
    simd = [f for f in ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8"] if f in flags]
    mem_kib = 0
    try:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        pass
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "simd": simd,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "gpu": "none",
        # What scripts/ggml-env switched on for llama.cpp on both sides (AMX needs a compiler
        # that builds its kernels right).
        "llama_cpp_amx": os.environ.get("GGML_AMX_INT8") == "ON",
        "llama_cpp_compiler": os.environ.get("CMAKE_CXX_COMPILER", "default"),
    }


def locked_version(crate):
    lock = (ROOT / "Cargo.lock").read_text()
    found = re.search(r'name = "' + re.escape(crate) + r'"\nversion = "([^"]+)"', lock)
    return found.group(1) if found else None


def same_outputs(concierge, peer):
    """How many answers are identical on both sides (greedy decoding of the same prompt)."""
    def texts(side):
        runs = side["long"]["runs"] + side["ttft"]["runs"] + side["concurrent"]["streams"]
        return {r["name"]: r.get("text", "") for r in runs}

    a, b = texts(concierge), texts(peer)
    names = sorted(set(a) & set(b))
    return {"identical": sum(a[n] == b[n] for n in names), "compared": len(names),
            "differ": [n for n in names if a[n] != b[n]]}


def fmt(value):
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("concierge")
    p.add_argument("peer")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    concierge = json.loads(Path(args.concierge).read_text())
    peer = json.loads(Path(args.peer).read_text())

    rows, ratios = [], {}
    for label, get, better in METRICS:
        a, b = get(concierge), get(peer)
        ratio = a / b if a is not None and b else None
        ratios[label] = ratio
        rows.append(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(ratio)}× ({better} is better) |")

    if concierge.get("model") != peer.get("model"):
        print(f"warning: the sides loaded different files: {concierge.get('model')} and {peer.get('model')}")
    print(f"model: {Path(concierge.get('model') or '?').name}\n")
    print(f"| measurement | Concierge | {peer['engine'].split(' (')[0]} | Concierge / peer |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    outputs = same_outputs(concierge, peer)
    for side in (concierge, peer):
        print(f"load average during {side['side']}: {side.get('loadavg_before')} -> {side.get('loadavg_after')}")
    print(f"\nidentical greedy answers: {outputs['identical']} of {outputs['compared']}"
          + (f" (differ: {', '.join(outputs['differ'])})" if outputs["differ"] else ""))

    results = {
        "machine": machine(),
        "model": Path(concierge.get("model") or "").name,
        "versions": {
            "peer": peer["engine"],
            "concierge": concierge["engine"],
            "llama-cpp-2": locked_version("llama-cpp-2"),
            "llama-cpp-sys-2": locked_version("llama-cpp-sys-2"),
        },
        "ratios_concierge_over_peer": ratios,
        "identical_answers": outputs,
        "concierge": concierge,
        "peer": peer,
    }
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
