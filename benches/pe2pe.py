"""pe2pe: moving N bytes from one PE to another, by IPCQ send/recv and by raw DMA.

Pairs (each present when the topology has it): ``cube-h`` PE 0 to its east neighbour in the
same cube, ``cube-v`` PE 0 to its south neighbour, ``cross-cube`` the east-most PE of cube 0's
first row to its east neighbour in cube 1 (one UCIe crossing), ``cross-sip`` the east-most PE
of SIP 0's first row to its east neighbour in SIP 1 (over the switch).

- ``ipcq_ns``: a kernel on both PEs; the sender makes an N-byte block in TCM and sends it, the
  receiver receives it. From the launch's start barrier to the end of the receiver's
  ``tl.recv`` (includes the sender's dispatch, TCM read and the tier's setup; ccl.buffer
  selects the tier). Across SIPs each side is a rank (``spawn``) launching on its own device.
- ``dma_ns``: one DMA write issued at the sender into the receiver's HBM slice on an idle
  system, issue to last byte committed.

Each measurement runs on a fresh system. Metric names are listed in docs/metrics.md.
"""

from dataclasses import dataclass
from typing import Any

import kernbench.lang as tl
from kernbench.bench import BenchContext, BenchResult, Table, bench
from kernbench.core import BenchError, fmt_bytes
from kernbench.runtime import PeDmaMsg, dist
from kernbench.runtime.hub import Hub
from kernbench.runtime.ipcq import Ipcq

PeId = tuple[int, int, int]
PAIR_ORDER = ("cube-h", "cube-v", "cross-cube", "cross-sip")


@dataclass(frozen=True)
class Pe2PeParams:
    sizes: tuple[int, ...] = (128, 1024, 4096, 10240)
    pairs: str = "all"

    def __post_init__(self) -> None:
        if not self.sizes or any(not isinstance(s, int) or s <= 0 for s in self.sizes):
            raise BenchError(f"bench.sizes: must be positive byte counts, got {list(self.sizes)}")


def pairs_of(ipcq: Ipcq) -> dict[str, tuple[PeId, PeId]]:
    """The pairs this topology has (see the module docstring)."""
    out: dict[str, tuple[PeId, PeId]] = {}
    first = (0, 0, 0)
    for name, direction in (("cube-h", "E"), ("cube-v", "S")):
        nb = ipcq.neighbor(first, direction)
        if nb is not None and nb[:2] == first[:2]:
            out[name] = (first, nb)
    east = (0, 0, ipcq.cols - 1)
    nb = ipcq.neighbor(east, "E")
    if nb is not None and nb[0] == 0:
        out["cross-cube"] = (east, nb)
    edge = ipcq.at(0, ipcq.grid_w - 1)
    if edge is not None:
        nb = ipcq.neighbor(edge, "E")
        if nb is not None and nb[0] == 1:
            out["cross-sip"] = (edge, nb)
    return out


@tl.jit
def one_way_kernel(nbytes: int, src: tuple, dst: tuple) -> None:
    if tl.pe_id() == src:
        tl.send(tl.zeros((nbytes,), tl.uint8), dst)
    else:
        tl.recv(src)


def ipcq_ns(ctx: BenchContext, src: PeId, dst: PeId, nbytes: int, label: str) -> float:
    system = ctx.new_system(label)
    hub = Hub(system.sim)
    ends: dict[PeId, float] = {}
    starts: list[float] = []

    def side(rank: int) -> None:
        dist.init_process_group()
        dev = dist.device()
        mine = [pe for pe in (src, dst) if pe[0] == dev.sip]
        if not mine:
            return
        launch = dev.launch(
            one_way_kernel, (len(mine),), nbytes, src, dst, pes=[pe[1:] for pe in mine]
        )
        dev.synchronize()
        starts.append(launch.start_ns)
        for pe, timing in zip(mine, launch.pes, strict=True):
            ends[pe] = timing.end_ns

    dist.spawn(side, max(src[0], dst[0]) + 1, system=system, hub=hub)
    return ends[dst] - min(starts)


def dma_ns(ctx: BenchContext, src: PeId, dst: PeId, nbytes: int, label: str) -> float:
    addr = ctx.topology.address.hbm(*dst)
    done = ctx.new_system(label).execute(PeDmaMsg(*src, addr, nbytes))
    if not done.ok:
        raise BenchError(f"pe2pe DMA {label} failed: {done.error_message}")
    return done.total_ns


@bench("pe2pe", params=Pe2PeParams, headline=("*/ipcq_ns",))
def pe2pe(ctx: BenchContext, p: Pe2PeParams) -> BenchResult:
    """PE-to-PE latency by IPCQ send/recv and by raw DMA, per pair and size."""
    system = ctx.new_system("pe2pe pairs")
    known = pairs_of(Ipcq.of(system))
    if p.pairs == "all":
        chosen = [name for name in PAIR_ORDER if name in known]
    else:
        chosen = [s.strip() for s in p.pairs.split(",") if s.strip()]
        for name in chosen:
            if name not in known:
                raise BenchError(
                    f"bench.pairs: {name!r} is not available on this topology; valid: all, "
                    f"{', '.join(n for n in PAIR_ORDER if n in known)}"
                )
    result = BenchResult()
    table = Table(
        f"PE to PE, {ctx.spec.ccl.buffer} IPCQ buffers",
        ["pair", "from", "to", "bytes", "ipcq_ns", "dma_ns", "ipcq_gbs", "dma_gbs"],
    )
    total, done = len(chosen) * len(p.sizes), 0
    for name in chosen:
        src, dst = known[name]
        for size in p.sizes:
            label = f"{name} {fmt_bytes(size)}"
            t_ipcq = ipcq_ns(ctx, src, dst, size, f"{label} ipcq")
            t_dma = dma_ns(ctx, src, dst, size, f"{label} dma")
            key = f"{name}/{size}B"
            result.metrics[f"{key}/ipcq_ns"] = t_ipcq
            result.metrics[f"{key}/dma_ns"] = t_dma
            table.rows.append(
                [name, _pe(src), _pe(dst), size, round(t_ipcq, 1), round(t_dma, 1),
                 round(size / t_ipcq, 2), round(size / t_dma, 2)]
            )  # fmt: skip
            done += 1
            ctx.progress(done, total, label)
    result.tables.append(table)
    for name in chosen:
        lat = [result.metrics[f"{name}/{s}B/ipcq_ns"] for s in sorted(p.sizes)]
        result.checks[f"{name}/ipcq_grows_with_size"] = all(
            a <= b for a, b in zip(lat, lat[1:], strict=False)
        )
    result.sim_events = ctx.sim_events
    result.sim_time_ns = ctx.sim_time_ns
    return result


def _pe(pe: Any) -> str:
    return f"s{pe[0]}.c{pe[1]}.pe{pe[2]}"
