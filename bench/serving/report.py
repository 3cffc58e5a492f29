"""Prints the serving benchmark's side-by-side table and writes results.json.

Usage: python report.py CONCIERGE.json PEER.json RESULTS.json
"""

import json
import platform
import sys
from datetime import datetime, timezone

concierge, peer = (json.load(open(path)) for path in sys.argv[1:3])


def ratio(ours, theirs):
    return None if not ours or theirs is None else theirs / ours


rows = [
    ("streams held", "streams_open", lambda r: r["streams_open"]),
    ("stream errors", "stream_errors", lambda r: r["stream_errors"]),
    ("post errors", "post_errors", lambda r: r["post_errors"]),
    ("events received / expected", None, lambda r: f'{r["events_received"]} / {r["events_expected"]}'),
    ("RSS idle (MiB)", None, lambda r: round(r["rss_mib"]["idle"], 1)),
    ("RSS after the conversations (MiB)", None, lambda r: round(r["rss_mib"].get("conversations_made", 0), 1)),
    ("RSS with streams held (MiB)", None, lambda r: round(r["rss_mib"]["streams_held"], 1)),
    ("RSS after the posts (MiB)", None, lambda r: round(r["rss_mib"]["after_posts"], 1)),
    ("event delay p50 (ms)", None, lambda r: r["event_delay_ms"]["p50"] and round(r["event_delay_ms"]["p50"], 2)),
    ("event delay p99 (ms)", None, lambda r: r["event_delay_ms"]["p99"] and round(r["event_delay_ms"]["p99"], 2)),
    ("time to open the streams (s)", None, lambda r: round(r["open_secs"], 1)),
]
print(f'{"":32} {"Concierge":>14} {"FastAPI":>14}')
for label, _, get in rows:
    print(f"{label:32} {str(get(concierge)):>14} {str(get(peer)):>14}")
memory = ratio(concierge["rss_mib"]["streams_held"], peer["rss_mib"]["streams_held"])
delay = ratio(concierge["event_delay_ms"]["p99"], peer["event_delay_ms"]["p99"])
def shown(x):
    return "n/a" if x is None else f"{x:.1f}x"


print(f"\nFastAPI / Concierge: memory with streams held {shown(memory)}, event delay p99 {shown(delay)}")
json.dump(
    {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "concierge": concierge,
        "fastapi": peer,
        "ratios": {"memory_held": memory, "event_delay_p99": delay},
    },
    open(sys.argv[3], "w"),
    indent=2,
)
