"""How the fluid model shares resources among the flows of one component (ADR 0025).

A flow (kernbench.sim.fluid.Flow) crosses resources ``res`` in path order, carrying ``w``
bytes on each per byte it moves, and never moves faster than its own ``cap`` (its source
edge). Two rules, both work-conserving in the end:

- :func:`fifo_shares`: each resource shares its capacity in proportion to what each flow
  offers it, and a flow offers the next resource on its path what it got from this one; a
  flow's rate is what it gets from its last resource. This is the steady state of a chain of
  FIFO queues with unbounded buffers, the flit model's edges: a source next to a merge, whose
  bytes arrive at its full rate, gets more of the merged link than flows that already shared
  a link upstream. Resources are visited in path order (a cycle among the paths is broken at
  its lowest resource and the pass repeated); then :func:`fill` shares what is left.
- :func:`fill`: progressive filling (max-min fairness): every growing flow grows at the same
  pace until a resource saturates or a flow reaches its cap; the flows through a saturated
  resource stop growing; repeat.
"""

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Protocol

# A resource is saturated when what is left of it is below this fraction of its capacity.
SATURATED_REL = 1e-9
# Passes over the resources when the flows' paths order them in a cycle.
CYCLIC_PASSES = 4


class FlowLike(Protocol, Hashable):
    res: list[int]
    w: list[float]
    cap: float
    limits: set[int]


Users = Mapping[int, dict]  # per resource: flow -> its weight there


def fifo_shares(
    flows: list[FlowLike], res: list[int], cap: Sequence[float], users: Users, track: bool
) -> dict[FlowLike, float]:
    """Rates of ``flows`` (every user of ``res``) shared in proportion to what each offers."""
    order, cyclic = _path_order(flows, res)
    at: dict[int, list[tuple[list[float], int, float, FlowLike]]] = {r: [] for r in res}
    offers: list[list[float]] = []
    for f in flows:
        offered = [f.cap] * len(f.res)
        offers.append(offered)
        for pos, (r, x) in enumerate(zip(f.res, f.w, strict=True)):
            at[r].append((offered, pos, x, f))
    for _ in range(CYCLIC_PASSES if cyclic else 1):
        for r in order:
            entries = at[r]
            load = 0.0
            for offered, pos, x, _f in entries:
                load += offered[pos] * x
            if load <= cap[r]:
                for offered, pos, _x, _f in entries:
                    if pos + 1 < len(offered):
                        offered[pos + 1] = offered[pos]
                continue
            scale = cap[r] / load
            for offered, pos, _x, f in entries:
                if pos + 1 < len(offered):
                    offered[pos + 1] = offered[pos] * scale
                else:
                    offered[pos] *= scale  # the last resource: what the flow gets
                if track:
                    f.limits.add(r)
    rates = {f: (o[-1] if o else f.cap) for f, o in zip(flows, offers, strict=True)}
    rem = {r: cap[r] - sum(rates[f] * x for _o, _p, x, f in at[r]) for r in res}
    growing = [f for f in flows if rates[f] < f.cap * (1.0 - SATURATED_REL)]
    if growing:
        for f, extra in fill(growing, res, cap, users, track, rem, rates).items():
            rates[f] += extra
    return rates


def fill(
    flows: list[FlowLike],
    res: list[int],
    cap: Sequence[float],
    users: Users,
    track: bool,
    rem: dict[int, float] | None = None,
    base: dict[FlowLike, float] | None = None,
) -> dict[FlowLike, float]:
    """Max-min fair rates of ``flows`` over what is left of ``res`` (``rem``, default all of
    it), each flow held to its ``cap`` less its ``base`` rate; returns the added rates."""
    mine = set(flows)
    rem = {r: cap[r] for r in res} if rem is None else {r: max(v, 0.0) for r, v in rem.items()}
    wsum = dict.fromkeys(res, 0.0)
    live = dict.fromkeys(res, 0)
    for f in flows:
        for r, x in zip(f.res, f.w, strict=True):
            wsum[r] += x
            live[r] += 1
    room = sorted(
        ((f.cap - (base[f] if base else 0.0), i, f) for i, f in enumerate(flows)),
        key=lambda t: (t[0], t[1]),
    )
    rates: dict[FlowLike, float] = {}
    c = 0
    active = [r for r in res if live[r]]
    level = 0.0
    while active or c < len(room):
        best, arg = float("inf"), -1
        for r in active:
            x = rem[r] / wsum[r]
            if x < best:
                best, arg = x, r
        while c < len(room) and room[c][2] in rates:
            c += 1
        if c < len(room) and room[c][0] - level <= best:
            best, arg = room[c][0] - level, -1
        if best == float("inf"):
            break
        level += best
        saturated = []
        for r in active:
            rem[r] -= best * wsum[r]
            if r == arg or rem[r] <= SATURATED_REL * cap[r]:
                saturated.append(r)
        stopped: list[FlowLike] = [f for r in saturated for f in users[r] if f in mine]
        while c < len(room) and room[c][0] <= level * (1.0 + SATURATED_REL):
            stopped.append(room[c][2])
            c += 1
        sat = set(saturated) if track else ()
        for f in stopped:
            if f in rates:
                continue
            rates[f] = level
            if track:
                f.limits.update(x for x in f.res if x in sat)
            for r2, x in zip(f.res, f.w, strict=True):
                wsum[r2] -= x
                live[r2] -= 1
        active = [r for r in active if live[r]]
    for f in flows:
        rates.setdefault(f, level)
    return rates


def _path_order(flows: Iterable[FlowLike], res: list[int]) -> tuple[list[int], bool]:
    """The resources in an order that follows every flow's path (topological); a cycle is
    broken at its lowest resource (and reported)."""
    succ: dict[int, set[int]] = {r: set() for r in res}
    indeg = dict.fromkeys(res, 0)
    for f in flows:
        for a, b in zip(f.res, f.res[1:], strict=False):
            if b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    order: list[int] = []
    ready = sorted(r for r in res if indeg[r] == 0)
    left = set(res)
    cyclic = False
    while left:
        if not ready:
            cyclic = True
            ready = [min(left)]
        r = ready.pop(0)
        if r not in left:
            continue
        left.discard(r)
        order.append(r)
        for b in sorted(succ[r]):
            indeg[b] -= 1
            if indeg[b] == 0 and b in left:
                ready.append(b)
    return order, cyclic
