"""Micro-benchmark of ``app.logs.masking.mask_event``, the per-event cost on the ingest path.

    uv run --frozen python bench/masking_bench.py                       # this tree's masking only
    uv run --frozen python bench/masking_bench.py --baseline HEAD~1     # A/B against another revision

The workload is a fixed, seeded mix of realistic audit events: most carry nothing sensitive (ids,
timestamps, IP addresses, user agents, paths, counters, small before/after states), a minority carry
e-mail addresses, phone numbers, passwords, tokens, card numbers, URL-encoded or escaped JSON. Each
figure is the best of ``--repeat`` timeit runs over the whole mix in thread CPU time (the wall clock
of a shared, overloaded machine mostly measures the scheduler), printed as events/s and µs/event,
for the clean events, the sensitive ones and the realistic mix (``--sensitive-share``, default 20 %).

With ``--baseline REV`` the ``masking.py`` of that git revision is loaded as a separate module and the
two are measured pass by pass in alternation (A, B, B, A, ...), keeping each side's best pass per round:
this shared machine's speed drifts by tens of percent within minutes, so only back-to-back passes are
compared; the median of the per-round ratios is the figure to quote.  ``--no-memo`` disables this
tree's memo of clean strings, for the worst case where no string ever repeats.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Event = tuple[str | None, dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "curl/8.5.0",
    "python-httpx/0.28.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
ACTIONS = ["CREATE", "UPDATE", "DELETE", "READ", "LOGIN", "EXPORT"]
RESOURCES = ["document", "invoice", "user", "project", "api_key", "report"]


def _clean_event(rng: random.Random) -> Event:
    rid = rng.randrange(1, 10**6)
    resource = rng.choice(RESOURCES)
    message = f"{rng.choice(ACTIONS).lower()} {resource} {resource}-{rid} by user-{rng.randrange(1000)}"
    metadata: dict[str, Any] = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "user_agent": rng.choice(AGENTS),
        "path": f"/api/v1/{resource}s/{rid}",
        "method": rng.choice(["GET", "POST", "PATCH", "DELETE"]),
        "status": rng.choice([200, 201, 204, 400, 404]),
        "duration_ms": round(rng.random() * 200, 2),
        "tags": ["web", rng.choice(["prod", "staging"])],
        "token_count": rng.randrange(100),
        "password_changed": rng.random() < 0.1,
        "at": "2026-11-30T12:34:56.789Z",
    }
    before = {"status": "draft", "title": f"Quarterly report {rid}", "version": rng.randrange(10), "amount": 1234.5}
    after = {**before, "status": "published", "updated_at": "2026-11-30T12:35:00Z", "version": before["version"] + 1}
    if rng.random() < 0.5:
        return message, metadata, None, None
    return message, metadata, before, after


def _sensitive_event(rng: random.Random) -> Event:
    message, metadata, before, after = _clean_event(rng)
    assert metadata is not None
    kind = rng.randrange(8)
    if kind == 0:
        message = f"login by jane.doe{rng.randrange(99)}@example.com from +44 20 7946 0958"
    elif kind == 1:
        metadata["password"] = "hunter2"
        metadata["headers"] = {"Authorization": f"Bearer {JWT}", "Accept": "application/json"}
    elif kind == 2:
        message = "paid with 4111 1111 1111 1111, token=abc123xyz"
    elif kind == 3:
        metadata["contact"] = {"email": "bob@example.org", "phone": "555-123-4567"}
    elif kind == 4:
        message = 'request body {\\"user\\": \\"bob\\", \\"password\\": \\"hunter2\\"}'
    elif kind == 5:
        metadata["query"] = "user=bob&next=%2Fhome%3Fa%3D1&password=hunter2"
    elif kind == 6:
        metadata["db_url"] = "postgres://app:s3cr3t@db.internal:5432/app"
        metadata["api_key"] = "k-9988776655"
    else:
        after = {"headers": [["Authorization", f"Bearer {JWT}"], ["Accept", "text/html"]], "card": 4111111111111111}
    return message, metadata, before, after


def workload(n: int, sensitive_share: float, seed: int = 42) -> tuple[list[Event], list[Event], list[Event]]:
    """(clean, sensitive, mix) events; the mix interleaves the two at ``sensitive_share``."""
    rng = random.Random(seed)
    clean = [_clean_event(rng) for _ in range(n)]
    sensitive = [_sensitive_event(rng) for _ in range(n)]
    mix = [_sensitive_event(rng) if rng.random() < sensitive_share else _clean_event(rng) for _ in range(n)]
    return clean, sensitive, mix


def load_revision(rev: str) -> ModuleType:
    """``app/logs/masking.py`` as it was at git revision ``rev``, as its own module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:app/logs/masking.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="masking_bench_")) / "masking_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("masking_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["masking_baseline"] = module
    spec.loader.exec_module(module)
    return module


def measure(mask_event: Callable[..., Any], events: list[Event], repeat: int) -> float:
    """Best seconds per event over ``repeat`` passes over ``events``."""

    # The module's memo of clean strings (if it has one) is emptied before every pass, so
    # only the repetition inside one pass over the events counts, as in a stream of new
    # events: user agents and labels repeat, ids, paths and messages do not.
    memo = getattr(sys.modules[mask_event.__module__], "_clean_strings", set())

    def run() -> None:
        memo.clear()
        for message, metadata, before, after in events:
            mask_event(message, metadata, before, after)

    run()  # warm the key-name cache and the regex caches
    # CPU time of this thread, not wall time: on a shared, overloaded machine the wall clock
    # mostly measures how long the scheduler kept us waiting.
    return min(timeit.repeat(run, number=1, repeat=repeat, timer=time.thread_time)) / len(events)


def measure_pair(
    old: Callable[..., Any], new: Callable[..., Any], events: list[Event], repeat: int
) -> tuple[float, float]:
    """Best seconds per event of ``old`` and ``new``, their passes interleaved (old, new, new, old, ...)."""
    best = [measure(old, events, 1), measure(new, events, 1)]
    sides = [(0, old), (1, new)]
    for i in range(repeat):
        for side, fn in sides if i % 2 == 0 else reversed(sides):
            best[side] = min(best[side], measure(fn, events, 1))
    return best[0], best[1]


def _line(label: str, seconds: float) -> str:
    return f"  {label:<10} {1 / seconds:>10,.0f} events/s  {seconds * 1e6:8.2f} µs/event"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per workload (default 2000)")
    parser.add_argument("--repeat", type=int, default=9, help="timeit passes per figure, best kept (default 5)")
    parser.add_argument("--sensitive-share", type=float, default=0.2, help="share in the mix (default 0.2)")
    parser.add_argument("--baseline", metavar="REV", help="compare with app/logs/masking.py at this git revision")
    parser.add_argument("--rounds", type=int, default=6, help="alternating A/B rounds with --baseline (default 6)")
    parser.add_argument(
        "--no-memo", action="store_true", help="disable this tree's memo of clean strings (every string unseen)"
    )
    args = parser.parse_args()

    from app.logs import masking

    if args.no_memo:
        masking._CLEAN_MAX_LEN = -1  # type: ignore[misc]  # the worst case: no string repeats

    clean, sensitive, mix = workload(args.events, args.sensitive_share)
    sets = {"clean": clean, "sensitive": sensitive, "mix": mix}
    if not args.baseline:
        print(f"app.logs.masking ({args.events} events per set, best of {args.repeat})")
        for label, events in sets.items():
            print(_line(label, measure(masking.mask_event, events, args.repeat)))
        return

    old = load_revision(args.baseline)
    ratios: dict[str, list[float]] = {label: [] for label in sets}
    for r in range(args.rounds):
        print(f"round {r + 1}")
        for label, events in sets.items():
            got = measure_pair(old.mask_event, masking.mask_event, events, args.repeat)
            ratios[label].append(got[1] / got[0])
            print(_line(f"{label}/old", got[0]))
            print(_line(f"{label}/new", got[1]) + f"   new/old {got[1] / got[0]:.3f}")
    print(f"median new/old per event over {args.rounds} rounds (baseline {args.baseline}; < 1 is faster):")
    for label, values in ratios.items():
        print(f"  {label:<10} {statistics.median(values):.3f}  (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
