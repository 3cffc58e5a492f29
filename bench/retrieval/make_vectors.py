#!/usr/bin/env python3
"""Writes the vectors every engine of the retrieval benchmark indexes and searches.

    python make_vectors.py --n 100000 --queries 1000 --seed 7 --out data/n100000-q1000-s7

Writes base.npy (n x 384 float32, unit rows), queries.npy (held-out draws from the same
distribution), truth.npy (the exact top 10 of every query by inner product, int64 row numbers,
best first, found by brute force in float64), base_topics.npy and query_topics.npy (each
vector's topic, n x 1 int64) and meta.json. The same arguments give the same
files, byte for byte.

The vectors are synthetic, shaped like sentence embeddings the way the project's own tests
and examples/ann_choice.rs shape them (crates/retrieval/tests/vector/clusters.rs): unit
vectors bunched into topics of very unequal size, all leaning towards one shared direction,
so that unrelated texts still have a cosine of 0.1-0.2 and same-topic ones about 0.6.
"""

import argparse
import json
from pathlib import Path

import numpy as np

DIMENSIONS = 384
# How far the topic centroids lean towards the shared direction (clusters.rs: SHARED_WEIGHT).
SHARED_WEIGHT = 0.4
# Length of the noise added to a unit centroid (clusters.rs: NOISE_LENGTH).
NOISE_LENGTH = 0.8
K = 10


def unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def sample(rng, n, topics):
    """n unit vectors; topic t is drawn with odds falling like 1/sqrt(t) (u^2 scaled)."""
    shared = unit_rows(rng.standard_normal((1, DIMENSIONS)))
    centroids = unit_rows(unit_rows(rng.standard_normal((topics, DIMENSIONS))) + SHARED_WEIGHT * shared)
    topic = np.minimum((rng.random(n) ** 2 * topics).astype(np.int64), topics - 1)
    noise = rng.standard_normal((n, DIMENSIONS)) * (NOISE_LENGTH / np.sqrt(DIMENSIONS))
    return unit_rows(centroids[topic] + noise).astype(np.float32), topic


def exact_top_k(base, queries, k, block=100):
    """Row numbers of the k largest inner products per query, best first (float64 scores)."""
    base64 = base.astype(np.float64)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start:start + block].astype(np.float64) @ base64.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:start + block] = np.take_along_axis(top, order, axis=1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--topics", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    vectors, topic = sample(rng, args.n + args.queries, args.topics)
    base, queries = vectors[: args.n], vectors[args.n:]
    truth = exact_top_k(base, queries, K)

    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "base.npy", base)
    np.save(args.out / "queries.npy", queries)
    np.save(args.out / "truth.npy", truth)
    # Topics of every vector: the hybrid benchmark gives each chunk and query a text drawn from
    # its topic's words, so that keywords and vectors agree the way they do on real chunks.
    np.save(args.out / "base_topics.npy", topic[: args.n].reshape(-1, 1))
    np.save(args.out / "query_topics.npy", topic[args.n:].reshape(-1, 1))
    sizes = np.bincount(topic[: args.n], minlength=args.topics)
    sample_pairs = rng.integers(0, args.n, size=(10_000, 2))
    random_cosine = float(np.mean(np.sum(base[sample_pairs[:, 0]] * base[sample_pairs[:, 1]], axis=1)))
    nearest = np.sum(queries * base[truth[:, 0]], axis=1)
    tenth = np.sum(queries * base[truth[:, K - 1]], axis=1)
    meta = {
        "generator": "bench/retrieval/make_vectors.py (synthetic clustered unit vectors)",
        "n": args.n,
        "queries": args.queries,
        "dimensions": DIMENSIONS,
        "topics": args.topics,
        "seed": args.seed,
        "shared_weight": SHARED_WEIGHT,
        "noise_length": NOISE_LENGTH,
        "k": K,
        "largest_topic": int(sizes.max()),
        "median_topic": float(np.median(sizes)),
        "mean_cosine_of_random_pairs": round(random_cosine, 4),
        "median_cosine_of_nearest": round(float(np.median(nearest)), 4),
        "median_cosine_of_10th_nearest": round(float(np.median(tenth)), 4),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
