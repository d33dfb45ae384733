"""Max-min fair sharing: a textbook example and properties that define it."""

from hypothesis import given, settings
from hypothesis import strategies as st

from kernbench.topology.fairshare import max_min_fair


def test_textbook_example():
    # link a (10) carries flows 0 and 1; link b (4) carries flows 1 and 2.
    # b saturates first at 2 per flow; flow 0 then takes the rest of a.
    assert max_min_fair([["a"], ["a", "b"], ["b"]], {"a": 10, "b": 4}) == [8.0, 2.0, 2.0]


def test_equal_flows_split_one_resource_evenly():
    assert max_min_fair([["h"]] * 8, {"h": 204.8}) == [204.8 / 8] * 8


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), min_size=1, max_size=8),
    st.lists(st.floats(1, 500), min_size=6, max_size=6),
)
def test_rates_are_feasible_and_every_flow_is_bottlenecked(flows, caps):
    capacity = dict(enumerate(caps))
    rates = max_min_fair(flows, capacity)
    load = {r: 0.0 for r in capacity}
    for f, rate in zip(flows, rates, strict=True):
        assert rate > 0
        for r in set(f):
            load[r] += rate
    for r, used in load.items():
        assert used <= capacity[r] * (1 + 1e-9)
    # max-min: each flow crosses a saturated resource on which no flow gets more than it
    for f, rate in zip(flows, rates, strict=True):
        saturated = [
            r
            for r in set(f)
            if load[r] >= capacity[r] * (1 - 1e-9)
            and all(rates[i] <= rate * (1 + 1e-9) for i, g in enumerate(flows) if r in g)
        ]
        assert saturated, (f, rate)
