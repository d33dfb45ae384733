"""Fixtures for kernel-language tests: small topologies and a fresh device on each."""

import pytest

from kernbench.runtime import Device, Hub, System


@pytest.fixture(scope="module")
def topo1x1(make_topology):
    """One cube (8 PEs)."""
    return make_topology(1, 1)


@pytest.fixture
def new_device():
    """``new_device(topology)``: a Device on a fresh, idle System (t = 0), driven from the test
    itself (its blocking calls run the simulation)."""

    def make(topology, sip: int = 0) -> Device:
        system = System(topology=topology)
        return Device(system, Hub(system.sim), sip)

    return make
