#!/usr/bin/env python3
"""The peer's side of the embedding benchmark: sentence-transformers on the same model folder,
the same texts, the same batches and the same number of threads as `retrieval_bench embed`.

    HF_HUB_OFFLINE=1 python peer_embed.py --texts texts.json --model-dir models/all-minilm-l6-v2 \
        [--threads 2] [--batch 64]

Prints one JSON document shaped like `retrieval_bench embed`'s. The texts are cut into the same
batches, in the same order, and each batch is one `encode` call: `encode` sorts a call's texts
by length before batching, which over the whole list would pad less than the batches Concierge
is given; within one batch it changes nothing.
"""

import argparse
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

SAMPLE_VECTORS = 8


def peak_rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def embed_workload(model, texts, batch):
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]

    def encode(items):
        return model.encode(items, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    sample = encode(batches[0]) if batches else []
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        for items in batches:
            encode(items)
        passes.append(time.perf_counter() - started)
    tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"])
    return {
        "texts": len(texts),
        "mean_tokens": tokens / max(len(texts), 1),
        "passes_s": passes,
        "texts_per_s": len(texts) / min(passes),
        "sample_vectors": [list(map(float, v)) for v in sample[:SAMPLE_VECTORS]],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    load_before = load_average()

    import torch

    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    texts = json.loads(args.texts.read_text())
    started = time.perf_counter()
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    load_s = time.perf_counter() - started

    workloads = {}
    with torch.inference_mode():
        for name in ("questions", "passages"):
            workloads[name] = embed_workload(model, texts[name], args.batch)
            print(f"sentence-transformers embed {name}: {workloads[name]['texts_per_s']:.1f} texts/s",
                  file=sys.stderr)

    print(json.dumps({
        "engine": "sentence-transformers",
        "library": f"sentence-transformers {version('sentence-transformers')}, torch {torch.__version__} (CPU)",
        "model": str(args.model_dir),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "load_s": load_s,
        "workloads": workloads,
        "peak_rss_mib": peak_rss_mib(),
        "load_before": load_before,
        "load_after": load_average(),
    }, indent=2))


if __name__ == "__main__":
    main()
