#!/usr/bin/env python3
"""Puts the sides of the retrieval benchmark side by side.

    python3 bench/retrieval/report.py OUT_DIR [--out results.json]

Reads OUT_DIR/{meta,concierge-float32,concierge-int8,hnswlib,faiss,exact,concierge-embed,
peer-embed,concierge-hybrid}.json (a missing one is reported as not measured), prints Markdown
tables and writes everything, with the comparisons and the machine, to --out. Standard library
only.
"""

import argparse
import json
import math
import os
import platform
import re
from pathlib import Path

TARGET_RECALL = 0.97
RECALL_LEVELS = [0.95, 0.97, 0.99]
INDEXES = [
    ("concierge-float32", "Concierge `VectorIndex` float32"),
    ("concierge-int8", "Concierge `VectorIndex` int8 + rescoring"),
    ("hnswlib", "hnswlib"),
    ("faiss", "faiss `IndexHNSWFlat`"),
    ("exact", "faiss `IndexFlatIP` (exact)"),
]


def read(out, name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine():
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^flags\s*:(.*)$", info, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu": cpu.group(1).strip() if cpu else "unknown",
        "cores": os.cpu_count(),
        "simd": [f for f in ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni"] if f in flags],
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
    }


def best_at(side, recall, key="qps_1_thread"):
    """The sweep point with the highest `key` among those reaching `recall`, or None."""
    points = [p for p in side["sweep"] if p["recall"] >= recall]
    return max(points, key=lambda p: p[key]) if points else None


def ef_of(side, point):
    """The point's ef, or a dash for exact search, which has none."""
    return "—" if side["engine"] == "exact" else point["ef"]


def fmt(value, digits=0):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def index_table(sides):
    lines = ["| index | build s (1 thread) | build s (2 threads) | index MiB | peak RSS MiB | "
             + " | ".join(f"recall ≥ {r}: ef · recall · QPS" for r in RECALL_LEVELS) + " |",
             "|---|---:|---:|---:|---:|" + "---|" * len(RECALL_LEVELS)]
    for name, label in INDEXES:
        side = sides.get(name)
        if side is None:
            lines.append(f"| {label} | not measured |" + " |" * (3 + len(RECALL_LEVELS)))
            continue
        cells = []
        for level in RECALL_LEVELS:
            point = best_at(side, level)
            cells.append(f"{ef_of(side, point)} · {point['recall']:.3f} · {fmt(point['qps_1_thread'])}" if point else "not reached")
        lines.append(f"| {side['library']} | {fmt(side['build_s'], 1)} | {fmt(side.get('build_s_threads'), 1)} | "
                     f"{fmt(side['index_mib'])} | {fmt(side['peak_rss_mib'])} | " + " | ".join(cells) + " |")
    return lines


def equal_recall(sides):
    """Best QPS at recall@10 ≥ TARGET_RECALL per engine, on one thread and on all, against hnswlib."""
    reference = sides.get("hnswlib")
    rows, lines = {}, [
        f"| index | QPS, 1 thread, recall@10 ≥ {TARGET_RECALL} (ef, recall) | ÷ hnswlib | QPS, {{threads}} threads (ef, recall) | ÷ hnswlib |",
        "|---|---:|---:|---:|---:|"]
    threads = None
    for name, label in INDEXES:
        side = sides.get(name)
        if side is None:
            continue
        threads = side["threads"]
        one, many = best_at(side, TARGET_RECALL), best_at(side, TARGET_RECALL, "qps_threads")
        ref_one = best_at(reference, TARGET_RECALL) if reference else None
        ref_many = best_at(reference, TARGET_RECALL, "qps_threads") if reference else None
        row = {
            "qps_1_thread": one and one["qps_1_thread"], "ef_1_thread": one and one["ef"],
            "qps_threads": many and many["qps_threads"], "ef_threads": many and many["ef"],
            "ratio_1_thread_vs_hnswlib": ratio(one and one["qps_1_thread"], ref_one and ref_one["qps_1_thread"]),
            "ratio_threads_vs_hnswlib": ratio(many and many["qps_threads"], ref_many and ref_many["qps_threads"]),
        }
        rows[name] = row

        def cell(point, key):
            return f"{fmt(point[key])} ({ef_of(side, point)}, {point['recall']:.3f})" if point else "not reached"

        lines.append(f"| {label} | {cell(one, 'qps_1_thread')} | {fmt(row['ratio_1_thread_vs_hnswlib'], 2)}× | "
                     f"{cell(many, 'qps_threads')} | {fmt(row['ratio_threads_vs_hnswlib'], 2)}× |")
    lines[0] = lines[0].replace("{threads}", str(threads))
    return rows, lines


def latency_lines(sides):
    lines = ["| index | ef | recall@10 | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|"]
    for name in ("concierge-float32", "concierge-int8"):
        side = sides.get(name)
        if side is None:
            continue
        point = best_at(side, TARGET_RECALL)
        default = next((p for p in side["sweep"] if p["ef"] == 64), None)
        for label, p in (("smallest reaching 0.97", point), ("default (64)", default)):
            if p:
                lines.append(f"| {side['precision']}, {label} | {p['ef']} | {p['recall']:.3f} | "
                             f"{fmt(p['p50_us'])} | {fmt(p['p99_us'])} |")
    return lines


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def embedding(concierge, peer):
    if concierge is None or peer is None:
        return {}, ["Embedding throughput: not measured (" + ("Concierge" if concierge is None else "peer") + " side missing)."]
    lines = [f"| workload | texts | mean tokens | Concierge texts/s | {peer['library']} texts/s | Concierge ÷ peer | "
             "lowest cosine between the two sides' vectors |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = {}
    for name in ("questions", "passages"):
        ours, theirs = concierge["workloads"][name], peer["workloads"][name]
        agreement = min((cosine(a, b) for a, b in zip(ours["sample_vectors"], theirs["sample_vectors"])), default=None)
        rows[name] = {"concierge_texts_per_s": ours["texts_per_s"], "peer_texts_per_s": theirs["texts_per_s"],
                      "ratio": ratio(ours["texts_per_s"], theirs["texts_per_s"]), "min_cosine": agreement}
        lines.append(f"| {name} | {ours['texts']} | {ours['mean_tokens']:.0f} | {fmt(ours['texts_per_s'], 1)} | "
                     f"{fmt(theirs['texts_per_s'], 1)} | {fmt(rows[name]['ratio'], 2)}× | {fmt(agreement, 5)} |")
    lines.append(f"\nthreads {concierge['threads']} vs {peer['threads']}, batch {concierge['batch']} vs {peer['batch']}; "
                 f"load s {concierge['load_s']:.2f} vs {peer['load_s']:.2f}; "
                 f"peak RSS MiB {concierge['peak_rss_mib']:.0f} vs {peer['peak_rss_mib']:.0f}")
    return rows, lines


def hybrid_lines(hybrid):
    if not hybrid or hybrid.get("status") != "measured":
        return ["Hybrid query latency: not measured — " + (hybrid or {}).get("reason", "no output")]
    stages = hybrid["stage_medians"]
    return [
        "| hybrid search, query vector given | chunks | queries | p50 ms | p99 ms | mean ms | median BM25 · vector · fusion+MMR ms | build s | memory MiB |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        f"| `KnowledgeBase::search_with_vector`, default settings | {hybrid['chunks']:,} | {hybrid['queries']:,} | "
        f"{hybrid['p50_ms']:.2f} | {hybrid['p99_ms']:.2f} | {hybrid['mean_ms']:.2f} | "
        f"{stages['bm25_ms']:.2f} · {stages['vector_ms']:.2f} · {stages['fusion_ms']:.2f} | {hybrid['build_s']:.1f} | "
        f"{hybrid['memory_mib']:.0f} |",
    ]


def loads(sides):
    return [f"- {name}: load {side.get('load_before', '?')} before, {side.get('load_after', '?')} after"
            for name, side in sides.items() if side and "load_before" in side]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--out", dest="results", type=Path)
    args = parser.parse_args()

    meta = read(args.out, "meta")
    sides = {name: read(args.out, name) for name, _ in INDEXES}
    present = {k: v for k, v in sides.items() if v}
    concierge_embed, peer_embed = read(args.out, "concierge-embed"), read(args.out, "peer-embed")
    hybrid = read(args.out, "concierge-hybrid")

    if meta:
        print(f"{meta['n']:,} synthetic {meta['dimensions']}-d unit vectors in {meta['topics']} skewed topics "
              f"(seed {meta['seed']}), {meta['queries']:,} held-out queries, exact top {meta['k']} by brute force; "
              f"median cosine to the nearest {meta['median_cosine_of_nearest']}, to the 10th "
              f"{meta['median_cosine_of_10th_nearest']}, random pairs {meta['mean_cosine_of_random_pairs']}\n")
    print("\n".join(index_table(present)))
    print()
    qps_rows, qps_lines = equal_recall(present)
    print("\n".join(qps_lines))
    print()
    print("Concierge vector search latency, one query at a time (tenant filter on):\n")
    print("\n".join(latency_lines(present)))
    print()
    embed_rows, embed_lines = embedding(concierge_embed, peer_embed)
    print("\n".join(embed_lines))
    print()
    print("\n".join(hybrid_lines(hybrid)))
    print()
    print("Machine load while measuring:")
    print("\n".join(loads({**present, "concierge-hybrid": hybrid, "concierge-embed": concierge_embed,
                             "peer-embed": peer_embed})))

    if args.results:
        # The sample vectors only serve the agreement figure, which the comparison keeps.
        for side in (concierge_embed, peer_embed):
            for workload in ((side or {}).get("workloads") or {}).values():
                workload.pop("sample_vectors", None)
        args.results.write_text(json.dumps({
            "machine": machine(), "data": meta, "indexes": present, "qps_at_equal_recall": qps_rows,
            "target_recall": TARGET_RECALL, "embedding": {"concierge": concierge_embed, "peer": peer_embed,
                                                         "comparison": embed_rows},
            "hybrid": hybrid}, indent=2) + "\n")


if __name__ == "__main__":
    main()
