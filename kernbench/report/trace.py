"""Chrome trace-event export (``trace.json.gz``) of a run's observation records.

Opens in ui.perfetto.dev and chrome://tracing. Layout (docs/traces.md):

- one process per host, switch, SIP IO chiplet and cube, plus ``kernbench`` whose ``systems``
  track labels each system the bench started; the systems are laid end to end on one timeline
  (system ``k`` starts where system ``k-1`` ended), since each starts its own clock at 0;
- one thread track per link, HBM pseudo-channel and DMA channel that was used, with a complete
  event ("X") per span; args carry the message id, bytes, flits, busy and wait times, and on a
  link the mean rate; slices on one thread must not overlap, so where a track's spans do
  (concurrent transfers of the fluid model) the later ones go to further lanes, tracks named
  ``<track> [n]`` with the track's sort index (see :func:`_lanes`); the first lane is the track
  itself, so a model whose spans never overlap (flit) gets one track per link as before;
- flow events ("s", "t", "f") from the first span of a message on each link to the next, in
  time order, so the UI draws arrows along its route (a read's request, then its data);
- counter tracks ("C"): utilization and queue (docs/traces.md) of the busiest links, averaged over
  ``COUNTER_BINS`` bins per system.

Timestamps are microseconds, as the format requires; ns values are kept in the args.
"""

import gzip
import heapq
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

COUNTER_BINS = 32
COUNTER_LINKS = 16
US = 1e-3  # microseconds per ns


def _group_order(group: str) -> tuple:
    if group == "kernbench":
        return (0, 0, 0, "")
    if group in ("host", "switch"):
        return (1, 0, 0, group)
    sip, _, rest = group.partition(".")
    s = int(sip.removeprefix("sip")) if sip.startswith("sip") else 0
    cube = int(rest.removeprefix("cube")) if rest.startswith("cube") else -1
    return (2, s, cube, group)


class _Ids:
    """Process and thread ids by name, with their metadata events."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.tids: dict[tuple[str, str], tuple[int, int]] = {}
        self.threads: dict[str, int] = {}  # per group, how many threads it has
        self.meta: list[dict[str, Any]] = []

    def pid(self, group: str) -> int:
        if group not in self.pids:
            pid = self.pids[group] = len(self.pids) + 1
            self.meta.append(
                {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": group}}
            )
        return self.pids[group]

    def tid(self, group: str, track: str, sort: int) -> tuple[int, int]:
        key = (group, track)
        if key not in self.tids:
            pid = self.pid(group)
            tid = self.threads[group] = self.threads.get(group, 0) + 1
            self.tids[key] = (pid, tid)
            self.meta.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}}
            )
            self.meta.append(
                {
                    "ph": "M",
                    "name": "thread_sort_index",
                    "pid": pid,
                    "tid": tid,
                    "args": {"sort_index": sort},
                }
            )
        return self.tids[key]


def build_trace(obs: Mapping[str, Any]) -> dict[str, Any]:
    """The trace as a Chrome trace-event JSON object."""
    ids = _Ids()
    for group in sorted(
        {"kernbench"} | {e["group"] for e in obs["topology"]["edges"]}, key=_group_order
    ):
        ids.pid(group)
    for pid in ids.pids.values():
        ids.meta.append(
            {
                "ph": "M",
                "name": "process_sort_index",
                "pid": pid,
                "args": {"sort_index": pid},
            }
        )
    edges = obs["topology"]["edges"]
    events: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    flow_id = 0
    offset = 0.0
    busiest = _busiest_links(obs)
    sys_pid, sys_tid = ids.tid("kernbench", "systems", 0)
    for k, system in enumerate(obs["systems"]):
        duration = system["duration_ns"]
        label = system["label"]
        events.append(
            {
                "ph": "X",
                "name": label,
                "cat": "system",
                "pid": sys_pid,
                "tid": sys_tid,
                "ts": offset * US,
                "dur": duration * US,
                "args": {"system": k, "duration_ns": duration},
            }
        )
        # (group, track, sort index, category, msg, start, end, args), in record order
        slices: list[tuple] = []
        for u in system["units"]:
            if u["kind"] == "hbm":
                for ch, msg, start, end, nbytes, bursts, busy in u["spans"]:
                    slices.append(
                        (
                            u["group"], f"{u['name']} ch{ch}", 100 + ch, "hbm", msg, start, end,
                            {
                                "system": k, "msg": msg, "bytes": nbytes, "bursts": bursts,
                                "busy_ns": busy,
                            },
                        )
                    )  # fmt: skip
            else:
                spans = u["spans"]
                for (msg, start, end, nbytes, queued), busy in zip(
                    spans, _uncovered(spans), strict=True
                ):
                    slices.append(
                        (
                            u["group"], u["name"], 10, "dma", msg, start, end,
                            {
                                "system": k, "msg": msg, "bytes": nbytes, "queued_ns": queued,
                                "busy_ns": busy,
                            },
                        )
                    )  # fmt: skip
        first_hops: dict[int, dict[int, tuple[list, int]]] = {}
        for span in system["link_spans"]:
            e, msg, start, end, nbytes, flits, busy, wait, arrive = span
            edge = edges[e]
            hops = first_hops.setdefault(msg, {})
            if e not in hops or start < hops[e][0][2]:
                hops[e] = (span, len(slices))
            slices.append(
                (
                    edge["group"], edge["name"], 1000 + e, "link", msg, start, end,
                    {
                        "system": k, "msg": msg, "bytes": nbytes,
                        "rate_gbs": nbytes / (end - start) if end > start else 0.0,
                        "flits": flits, "busy_ns": busy, "wait_ns": wait, "arrive_ns": arrive,
                    },
                )
            )  # fmt: skip
        tids = []
        for (group, track, sort, cat, msg, start, end, args), lane in zip(
            slices, _lanes(slices), strict=True
        ):
            pid, tid = ids.tid(group, track if lane == 0 else f"{track} [{lane + 1}]", sort)
            tids.append((pid, tid))
            events.append(_slice(cat, msg, pid, tid, offset, start, end, args))
        for msg, hops in first_hops.items():
            chain = sorted(hops.values(), key=lambda h: (h[0][2], h[0][3]))
            if len(chain) < 2:
                continue
            flow_id += 1
            for i, (span, index) in enumerate(chain):
                pid, tid = tids[index]
                ph = "s" if i == 0 else ("f" if i == len(chain) - 1 else "t")
                ev = {
                    "ph": ph,
                    "name": f"msg {msg}",
                    "cat": "route",
                    "id": flow_id,
                    "pid": pid,
                    "tid": tid,
                    "ts": (offset + span[2]) * US,
                }
                if ph == "f":
                    ev["bp"] = "e"
                events.append(ev)
        counters += _counters(system, edges, busiest, ids, offset)
        offset += duration
    events.sort(key=lambda ev: ev["ts"])
    other: dict[str, Any] = {
        "kernbench_trace_level": obs.get("level"),
        "spans_recorded": obs.get("events", 0),
        "spans_dropped": obs.get("dropped", 0),
        "max_events": obs.get("max_events"),
        "time_unit_of_args": "ns",
    }
    if obs.get("dropped"):
        note = cap_note(obs)
        other["note"] = note
        events.insert(
            0,
            {"ph": "i", "s": "g", "name": note, "pid": sys_pid, "tid": sys_tid, "ts": 0.0},
        )
    return {
        "traceEvents": ids.meta + events + counters,
        "displayTimeUnit": "ns",
        "otherData": other,
    }


def cap_note(obs: Mapping[str, Any]) -> str:
    return (
        f"trace incomplete: the cap of {obs.get('max_events'):,} spans (sim.trace_max_events) "
        f"was reached; {obs.get('dropped'):,} later spans were dropped. Statistics and "
        "links.csv are complete."
    )


def _uncovered(spans: list[tuple]) -> list[float]:
    """Per DMA span ``(msg, start, end, ...)`` of one channel, the time it adds to the
    channel's busy time: the part of it no earlier-starting span covers. With several DMAs in
    flight (``hw.pe.dma_outstanding``) they sum to the channel's busy time, as with one."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i][1], spans[i][2], i))
    out = [0.0] * len(spans)
    covered = float("-inf")
    for i in order:
        start, end = spans[i][1], spans[i][2]
        out[i] = max(0.0, end - max(start, covered))
        covered = max(covered, end)
    return out


def _lanes(slices: list[tuple]) -> list[int]:
    """The lane of each slice on its track (``slices[i][:2]``, from ``start`` at ``[5]`` to
    ``end`` at ``[6]``): by start time (then end, then record order), each slice takes the
    lowest lane that is free by its start, so the slices of one lane never overlap and a
    track whose slices never overlap keeps them all in lane 0. Deterministic."""
    by_track: dict[tuple, list[int]] = {}
    for i, s in enumerate(slices):
        by_track.setdefault(s[:2], []).append(i)
    lanes = [0] * len(slices)
    for members in by_track.values():
        if all(slices[a][6] <= slices[b][5] for a, b in zip(members, members[1:], strict=False)):
            continue  # one after the other, as recorded: all in lane 0
        members.sort(key=lambda i: (slices[i][5], slices[i][6]))
        busy: list[tuple[float, int]] = []  # (end, lane) of the slices still in progress
        free: list[int] = []
        count = 0
        for i in members:
            start, end = slices[i][5], slices[i][6]
            while busy and busy[0][0] <= start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane, count = count, count + 1
            lanes[i] = lane
            heapq.heappush(busy, (end, lane))
    return lanes


def _slice(
    cat: str, msg: int, pid: int, tid: int, offset: float, start: float, end: float, args: dict
) -> dict[str, Any]:
    return {
        "ph": "X",
        "name": f"msg {msg}",
        "cat": cat,
        "pid": pid,
        "tid": tid,
        "ts": (offset + start) * US,
        "dur": (end - start) * US,
        "args": args,
    }


def _busiest_links(obs: Mapping[str, Any]) -> list[int]:
    n = len(obs["topology"]["edges"])
    busy = np.zeros(n)
    for system in obs["systems"]:
        busy += np.asarray(system["links"]["busy_ns"], dtype=float)
    order = [int(i) for i in np.argsort(-busy, kind="stable") if busy[i] > 0]
    return order[:COUNTER_LINKS]


def _counters(
    system: Mapping[str, Any], edges: list, busiest: list[int], ids: _Ids, offset: float
) -> list[dict[str, Any]]:
    """Per-bin utilization and mean queued flits of the busiest links within one system.

    A span's busy time, and its flits' summed wait, are spread evenly over the span (the wait
    over the span from its first flit's arrival), which is exact for back-to-back flits. A
    fluid span moves its bytes at a varying rate, so spreading it evenly can put more busy
    time in a bin than the bin lasts where spans overlap; the excess moves on to the next bins
    (the link carried it, just not then), which keeps the series' integral, the busy time.
    """
    duration = system["duration_ns"]
    if duration <= 0 or not busiest:
        return []
    width = duration / COUNTER_BINS
    edges_of = {e: i for i, e in enumerate(busiest)}
    busy = np.zeros((len(busiest), COUNTER_BINS))
    queued = np.zeros((len(busiest), COUNTER_BINS))
    lo = np.arange(COUNTER_BINS) * width
    hi = lo + width
    for e, _msg, start, end, _b, _f, span_busy, wait, arrive in system["link_spans"]:
        row = edges_of.get(e)
        if row is None:
            continue
        busy[row] += span_busy * _overlap(lo, hi, start, end)
        if wait > 0:
            queued[row] += wait * _overlap(lo, hi, arrive, end)
    for row in busy:
        _spill(row, width)
    out = []
    for e, row in edges_of.items():
        edge = edges[e]
        pid = ids.pid(edge["group"])
        last_u = last_q = None
        for b in range(COUNTER_BINS + 1):
            u = float(busy[row, b] / width) if b < COUNTER_BINS else 0.0
            q = float(queued[row, b] / width) if b < COUNTER_BINS else 0.0
            ts = (offset + b * width) * US
            if u != last_u:
                out.append(_counter(f"util {edge['name']}", pid, ts, round(u, 6)))
                last_u = u
            if q != last_q and (q > 0 or last_q is not None):
                out.append(_counter(f"queue {edge['name']}", pid, ts, round(q, 6)))
                last_q = q
    return out


def _spill(row: np.ndarray, width: float) -> None:
    """Move what exceeds ``width`` in a bin to the following bins (then, if the end is full,
    to the preceding ones), in place."""
    carry = 0.0
    for order in (range(row.size), range(row.size - 1, -1, -1)):
        for b in order:
            row[b] += carry
            carry = max(row[b] - width, 0.0)
            row[b] -= carry


def _overlap(lo: np.ndarray, hi: np.ndarray, start: float, end: float) -> np.ndarray:
    """The fraction of ``[start, end]`` that falls in each bin ``[lo, hi)``."""
    if end <= start:
        return ((lo <= start) & (start < hi)).astype(float)
    return np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None) / (end - start)


def _counter(name: str, pid: int, ts: float, value: float) -> dict[str, Any]:
    return {"ph": "C", "name": name, "pid": pid, "ts": ts, "args": {"value": value}}


def write_trace(obs: Mapping[str, Any], path: Path) -> None:
    data = json.dumps(build_trace(obs), separators=(",", ":"))
    with gzip.open(path, "wt", compresslevel=6) as f:
        f.write(data)
