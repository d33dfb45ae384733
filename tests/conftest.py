"""Shared small systems. A Topology is immutable apart from its route cache, so one instance per
module is shared by every System built on it; each test builds its own System (idle clock)."""

import pytest

from kernbench.hw import HwSpec
from kernbench.hw.pe import PeSpec
from kernbench.sim.spec import MODELS, SimSpec
from kernbench.topology import SystemSpec, Topology, TopologySpec


def build_topology(
    mesh_w: int,
    mesh_h: int,
    sips: int = 1,
    model: str = "flit",
    num_stages: int = 1,
    dma_outstanding: int = 1,
) -> Topology:
    """A topology of the given shape and transfer model. Kernels on it run blocking by default
    (``num_stages=1``, ``dma_outstanding=1``: every call completes before the next), the mode
    whose timings the kernel tests derive in closed form; the PE pipeline's own tests ask for
    more."""
    name = f"{mesh_w}x{mesh_h}" if sips == 1 else f"{sips}s{mesh_w}x{mesh_h}"
    return Topology(
        SystemSpec(
            topology=TopologySpec(name=name, sips=sips, mesh_w=mesh_w, mesh_h=mesh_h),
            hw=HwSpec(pe=PeSpec(dma_outstanding=dma_outstanding)),
            sim=SimSpec(model=model, num_stages=num_stages),
        )
    )


@pytest.fixture(scope="session")
def make_topology():
    """Build a fresh topology of any shape and transfer model:
    ``make_topology(mesh_w, mesh_h, sips=1, model="flit", num_stages=1, dma_outstanding=1)``."""
    return build_topology


@pytest.fixture(scope="session", params=MODELS)
def model(request) -> str:
    """Each transfer model in turn (``sim.model``), for tests that must hold under both."""
    return request.param


@pytest.fixture(scope="module")
def topo2x2() -> Topology:
    """One SIP, a 2x2 cube mesh (4 cubes, 32 PEs)."""
    return build_topology(2, 2)


@pytest.fixture(scope="module")
def topo2sip() -> Topology:
    """Two SIPs of a 2x2 mesh each, joined by the fabric switch."""
    return build_topology(2, 2, sips=2)


@pytest.fixture(scope="module")
def topo4x4() -> Topology:
    """The default shape: one SIP, a 4x4 mesh."""
    return build_topology(4, 4)


@pytest.fixture(scope="module")
def topo1x1(make_topology):
    """One cube (8 PEs)."""
    return make_topology(1, 1)


@pytest.fixture
def new_device():
    """``new_device(topology)``: a Device on a fresh, idle System (t = 0), driven from the test
    itself (its blocking calls run the simulation)."""
    from kernbench.runtime import Device, Hub, System

    def make(topology, sip: int = 0) -> Device:
        system = System(topology=topology)
        return Device(system, Hub(system.sim), sip)

    return make
