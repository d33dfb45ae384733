"""Max-min fair sharing of bandwidth among flows (progressive filling).

Each flow crosses a set of resources with a capacity in GB/s. All unfrozen flows grow at the
same rate until a resource saturates; the flows through it freeze at their current rate; this
repeats until every flow is frozen. The sum of the rates is the peak aggregate bandwidth a
congestion scenario can reach, the reference its utilization is measured against.
"""

from collections.abc import Hashable, Mapping, Sequence


def max_min_fair(
    flows: Sequence[Sequence[Hashable]], capacity_gbs: Mapping[Hashable, float]
) -> list[float]:
    """Rates in GB/s, one per flow; a flow with no resources is left at ``inf``."""
    rate = [0.0] * len(flows)
    frozen = [not f for f in flows]
    remaining = dict(capacity_gbs)
    users: dict[Hashable, list[int]] = {}
    for i, f in enumerate(flows):
        for r in set(f):
            users.setdefault(r, []).append(i)
    while not all(frozen):
        # The tightest resource decides how much every active flow can still grow.
        best, grow = None, float("inf")
        for r, idx in users.items():
            active = sum(1 for i in idx if not frozen[i])
            if active and remaining[r] / active < grow:
                best, grow = r, remaining[r] / active
        for i, f in enumerate(flows):
            if not frozen[i]:
                rate[i] += grow
                for r in set(f):
                    remaining[r] -= grow
        for i in users[best]:
            frozen[i] = True
        for r, idx in users.items():
            if remaining[r] <= 1e-9 * capacity_gbs[r]:
                for i in idx:
                    frozen[i] = True
    return [r if flows[i] else float("inf") for i, r in enumerate(rate)]
