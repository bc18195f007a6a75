#!/usr/bin/env python3
"""The bins workload through the Python binding (issue 17).

The same workload as tests/bench/bench_bins.c's *_minimal modes, so the
figures compare: N missed-bin cases of the minimal service
(tests/bench/minimal_bins.lua), each opened and moved by assign, schedule
and collect (4 transitions per case), in blocks of GROUP cases (default
1000: open the block, then assign it, schedule it, collect it), on a file
database with synchronous=NORMAL and the engine clock fixed at Monday
2 November 2026, 10:00 UTC.

  sync   Engine.open_case / Engine.signal(quiet=True): one commit per call
  async  Engine.open_case_async / Engine.signal_async: a block's calls are
         queued, then Engine.run_nowait() applies them in one group commit

Prints, per mode:

  python sync: T transitions, X transitions/s (N cases, S s)

Seconds count the transitions only (not opening the engine or loading the
service).  Exit status: 0 measured, 1 a call failed, 2 usage.

  LIBFLOW_LIBRARY=build/libflow.so python3 bindings/python/bench_bins.py \
      [--n 20000] [--group 1000] [--modes sync,async]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import libflow  # noqa: E402

SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
MINIMAL = os.path.join(SOURCE_ROOT, "tests", "bench", "minimal_bins.lua")
START = "2026-11-02T10:00:00Z"
EVENTS = ("open", "assign", "schedule", "collect")
# No event on the happy path needs a role, but a crew supervisor holds
# both, as in the C benchmark.
ACTOR = libflow.Actor("bench", ("crew", "supervisor"))


def open_data(i: int) -> Dict[str, Any]:
    """What a resident reports for case i."""
    return {"uprn": f"1000{i}", "address": f"{i} High Street",
            "bin": "refuse", "reported_by": "citizen"}


def payload(phase: int, i: int) -> Dict[str, Any]:
    """The payload of phase (1 assign, 2 schedule, 3 collect) for case i."""
    if phase == 1:
        return {"crew": f"crew-{i % 10}"}
    if phase == 2:
        return {"date": "2026-12-01"}
    return {}


def open_engine(path: str, service: str) -> libflow.Engine:
    """An engine on path with the service loaded and the clock fixed."""
    eng = libflow.Engine(path, synchronous=libflow.SyncMode.NORMAL, now=START)
    eng.load_service_file(service)
    return eng


def run_sync(eng: libflow.Engine, n: int, group: int) -> List[str]:
    """Every case, one call and one commit at a time; returns the last
    block's ids."""
    ids: List[str] = []
    for first in range(1, n + 1, group):
        count = min(group, n - first + 1)
        ids = [eng.open_case("missed_bin", open_data(first + k),
                             actor=ACTOR)["id"] for k in range(count)]
        for phase in (1, 2, 3):
            event = EVENTS[phase]
            for k in range(count):
                eng.signal(ids[k], event, payload(phase, first + k),
                           actor=ACTOR, quiet=True)
    return ids


def run_async(eng: libflow.Engine, n: int, group: int) -> List[str]:
    """Every block queued and applied in one group commit per phase."""
    ids: List[str] = []
    for first in range(1, n + 1, group):
        count = min(group, n - first + 1)
        for phase in range(4):
            if phase == 0:
                futs = [eng.open_case_async("missed_bin",
                                            open_data(first + k), actor=ACTOR)
                        for k in range(count)]
            else:
                event = EVENTS[phase]
                futs = [eng.signal_async(ids[k], event,
                                         payload(phase, first + k),
                                         actor=ACTOR)
                        for k in range(count)]
            rounds = 0
            while eng.pending_calls:
                eng.run_nowait()
                rounds += 1
                if rounds > 1000:
                    raise RuntimeError("run_nowait() does not flush the "
                                       "queued calls")
            if phase == 0:
                ids = [f.result(timeout=0)["id"] for f in futs]
            else:
                for f in futs:
                    f.result(timeout=0)  # raises the refusal, if any
    return ids


MODES: Dict[str, Callable[[libflow.Engine, int, int], List[str]]] = {
    "sync": run_sync,
    "async": run_async,
}


def measure(mode: str, n: int, group: int, service: str, folder: str
            ) -> float:
    """Runs one mode on a fresh database; returns the seconds taken."""
    path = os.path.join(folder, f"bins_{mode}.db")
    eng = open_engine(path, service)
    try:
        t0 = time.perf_counter()
        ids = MODES[mode](eng, n, group)
        seconds = time.perf_counter() - t0
        if ids and eng.get_case(ids[-1])["state"] != "closed":
            raise RuntimeError(f"case {ids[-1]} did not end closed")
        return seconds
    finally:
        eng.close()


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="The bins workload through the Python binding.")
    parser.add_argument("--n", type=int, default=20000,
                        help="cases (default 20000)")
    parser.add_argument("--group", type=int, default=1000,
                        help="cases per block (default 1000)")
    parser.add_argument("--modes", default="sync,async",
                        help="comma-separated: sync, async")
    parser.add_argument("--service", default=MINIMAL,
                        help="the service script (default the minimal one)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if args.n < 1 or args.group < 1 or unknown or not modes:
        parser.print_usage(sys.stderr)
        print(f"bench_bins.py: bad --n, --group or modes {unknown}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="flow-pybench-") as folder:
        for mode in modes:
            try:
                seconds = measure(mode, args.n, args.group, args.service,
                                  folder)
            except (libflow.Error, RuntimeError) as exc:
                print(f"bench_bins.py: {mode}: {exc}", file=sys.stderr)
                return 1
            transitions = 4 * args.n
            print(f"python {mode}: {transitions} transitions, "
                  f"{transitions / seconds:.0f} transitions/s "
                  f"({args.n} cases, {seconds:.2f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
