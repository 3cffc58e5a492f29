#!/usr/bin/env python3
"""The peers' side of the vector-index benchmark: hnswlib, faiss HNSW, and faiss exact search,
on the vectors make_vectors.py wrote, with the graph settings and ef sweep Concierge gets.

    python peer_ann.py --engine hnswlib|faiss|exact --data DIR [--threads 2] [--ef 10,16,...]
                       [--connectivity 16] [--ef-construction 128]

Prints one JSON document, shaped like `retrieval_bench ann`'s. Each engine runs in a process
of its own, so that its memory is its own.

How each is driven (the fastest way each library offers from Python):
- builds: the whole matrix in one call, first on one thread (Concierge's index inserts one
  vector at a time under its write lock, so it builds on one), then again on --threads threads,
  timed only, to show what the library does with the cores;
- queries: the whole query matrix in one call, on one thread and then on --threads threads, so
  the loop over queries runs in C++ and no Python call is paid per query. Best of three passes.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

K = 10
PASSES = 3
ENOUGH_RECALL = 0.999
DEFAULT_EF = "10,16,20,24,32,40,48,64,80,96,128,160,192,256,384,512"


def memory_mib():
    """VmRSS and VmHWM of this process, in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def load_average():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def recall(found, truth):
    return float(np.mean([len(set(f[:K]) & set(t[:K])) / K for f, t in zip(found.tolist(), truth.tolist())]))


def best_seconds(run):
    best = float("inf")
    result = None
    for _ in range(PASSES):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


class Hnswlib:
    def __init__(self, dims, n, connectivity, ef_construction):
        import hnswlib

        self.version = getattr(hnswlib, "__version__", None) or _dist_version("hnswlib")
        self.index = hnswlib.Index(space="ip", dim=dims)
        self.index.init_index(max_elements=n, M=connectivity, ef_construction=ef_construction, random_seed=100)

    def build(self, base, threads):
        self.index.add_items(base, np.arange(len(base)), num_threads=threads)

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def search(self, queries, threads):
        labels, _ = self.index.knn_query(queries, k=K, num_threads=threads)
        return labels


class FaissHnsw:
    def __init__(self, dims, n, connectivity, ef_construction):
        import faiss

        self.faiss = faiss
        self.version = faiss.__version__
        self.index = faiss.IndexHNSWFlat(dims, connectivity, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction

    def build(self, base, threads):
        self.faiss.omp_set_num_threads(threads)
        self.index.add(base)

    def set_ef(self, ef):
        self.index.hnsw.efSearch = ef

    def search(self, queries, threads):
        self.faiss.omp_set_num_threads(threads)
        _, labels = self.index.search(queries, K)
        return labels


class FaissExact(FaissHnsw):
    """Brute force (IndexFlatIP): recall 1 at any ef; the reference HNSW has to beat."""

    def __init__(self, dims, n, connectivity, ef_construction):
        import faiss

        self.faiss = faiss
        self.version = faiss.__version__
        self.index = faiss.IndexFlatIP(dims)

    def set_ef(self, ef):
        pass


ENGINES = {
    "hnswlib": (Hnswlib, "hnswlib {version} (HNSW, space=ip)"),
    "faiss": (FaissHnsw, "faiss-cpu {version} IndexHNSWFlat (inner product)"),
    "exact": (FaissExact, "faiss-cpu {version} IndexFlatIP (exact)"),
}


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ef", default=DEFAULT_EF)
    parser.add_argument("--connectivity", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    args = parser.parse_args()
    load_before = load_average()

    base = np.load(args.data / "base.npy")
    queries = np.load(args.data / "queries.npy")
    truth = np.load(args.data / "truth.npy")
    n, dims = base.shape
    make, label = ENGINES[args.engine]

    rss_before, _ = memory_mib()
    engine = make(dims, n, args.connectivity, args.ef_construction)
    started = time.perf_counter()
    engine.build(base, 1)
    build_s = time.perf_counter() - started
    rss_after, hwm_after_build = memory_mib()

    sweep = []
    for ef in [int(ef) for ef in args.ef.split(",")] if args.engine != "exact" else [0]:
        engine.set_ef(ef)
        single_s, found = best_seconds(lambda: engine.search(queries, 1))
        parallel_s, _ = best_seconds(lambda: engine.search(queries, args.threads))
        point = {"ef": ef, "recall": recall(found, truth), "qps_1_thread": len(queries) / single_s,
                 "qps_threads": len(queries) / parallel_s}
        print(f"{args.engine} ef={ef:<4} recall={point['recall']:.4f} qps(1)={point['qps_1_thread']:>7.0f} "
              f"qps({args.threads})={point['qps_threads']:>7.0f}", file=sys.stderr)
        sweep.append(point)
        if point["recall"] >= ENOUGH_RECALL:
            break

    peak = max(memory_mib()[1], hwm_after_build)
    del engine
    again = make(dims, n, args.connectivity, args.ef_construction)
    started = time.perf_counter()
    again.build(base, args.threads)
    build_threads_s = time.perf_counter() - started

    print(json.dumps({
        "engine": args.engine,
        "library": label.format(version=again.version),
        "n": n,
        "queries": len(queries),
        "dimensions": dims,
        "connectivity": args.connectivity if args.engine != "exact" else None,
        "ef_construction": args.ef_construction if args.engine != "exact" else None,
        "threads": args.threads,
        "build_threads": 1,
        "build_s": build_s,
        "build_s_threads": build_threads_s,
        "rss_before_build_mib": rss_before,
        "rss_after_build_mib": rss_after,
        "index_mib": rss_after - rss_before,
        "peak_rss_mib": peak,
        "sweep": sweep,
        "load_before": load_before,
        "load_after": load_average(),
    }, indent=2))


if __name__ == "__main__":
    main()
