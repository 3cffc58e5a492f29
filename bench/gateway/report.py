"""Prints the gateway benchmark's table and writes its results file.

usage: report.py OUT_DIR RESULTS_JSON
"""
import json
import pathlib
import sys

out, results_path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runs = {}
for path in sorted(out.glob("*-*-*.json")):
    run = json.loads(path.read_text())
    mode = "stream" if run["stream"] else "json"
    runs[(run["name"], run["rate"], mode)] = run


def ms(value):
    return "—" if value is None else f"{value:.3f}"


rows = []
print("| side | rate/s | mode | ok | errors | shed | p50 ms | p99 ms | p99.9 ms | overhead p50 ms | overhead p99 ms |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (name, rate, mode), run in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][2], ["direct", "concierge", "litellm"].index(kv[0][0]))):
    lat = run["latency_ms"]
    direct = runs.get(("direct", rate, mode))
    over50 = over99 = None
    if direct and name != "direct" and lat["p50"] is not None:
        over50 = lat["p50"] - direct["latency_ms"]["p50"]
        over99 = lat["p99"] - direct["latency_ms"]["p99"]
    rows.append({**run, "mode": mode, "overhead_ms": {"p50": over50, "p99": over99}})
    print(f"| {name} | {rate} | {mode} | {run['ok']} | {run['errors']} | {run['shed']} | {ms(lat['p50'])} | "
          f"{ms(lat['p99'])} | {ms(lat['p999'])} | {ms(over50)} | {ms(over99)} |")

hwm = out / "concierge-hwm-kib"
summary = {"runs": rows}
if hwm.exists():
    summary["concierge_peak_rss_mib"] = round(int(hwm.read_text().strip()) / 1024, 1)
    print(f"\nConcierge peak RSS: {summary['concierge_peak_rss_mib']} MiB")
results_path.write_text(json.dumps(summary, indent=2) + "\n")
