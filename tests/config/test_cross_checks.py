"""Limits on single values that would hang or crash a run (issue 17), and the checks of values
of one config section against another's (kernbench/config/validate.py: check_system)."""

import re
from dataclasses import dataclass

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from kernbench.bench import BenchInfo
from kernbench.config import bench_params_from_cfg, conf_dir, system_spec_from_cfg
from kernbench.core.errors import BenchError, ConfigError
from kernbench.hw.ipcq import MIN_SLOT_BYTES
from kernbench.topology import SystemSpec, Topology
from kernbench.topology.spec import MAX_MESH_SIDE

ROOT = conf_dir().parent


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        system_spec_from_cfg(compose_cfg(*overrides))
    return str(info.value)


# -- the mesh ---------------------------------------------------------------------------------
def test_every_topology_preset_is_within_the_mesh_limit():
    for path in sorted((conf_dir() / "topology").glob("*.yaml")):
        spec = system_spec_from_cfg(compose_cfg(f"topology={path.stem}"))
        assert max(spec.topology.mesh_w, spec.topology.mesh_h) <= MAX_MESH_SIDE


@pytest.mark.parametrize("key", ["mesh_w", "mesh_h"])
def test_a_side_beyond_the_limit_is_refused_naming_it(key):
    message = error_of(f"topology.{key}={MAX_MESH_SIDE + 1}")
    assert message == (
        f"topology.{key}: must be between 1 and {MAX_MESH_SIDE} (a SIP's mesh is at most "
        f"{MAX_MESH_SIDE}x{MAX_MESH_SIDE} cubes), got {MAX_MESH_SIDE + 1}"
    )


def test_the_largest_mesh_builds_and_its_hbm_is_addressable():
    spec = system_spec_from_cfg(
        compose_cfg(f"topology.mesh_w={MAX_MESH_SIDE}", f"topology.mesh_h={MAX_MESH_SIDE}")
    )
    topo = Topology(spec)  # the address map refuses a mesh whose HBM it cannot address
    last = MAX_MESH_SIDE * MAX_MESH_SIDE - 1
    pes = spec.hw.cube.pes
    addr = topo.address.hbm(0, last, pes - 1, spec.hw.hbm.slice_bytes - 1)
    assert topo.address.decode_hbm(addr).cube == last


# -- the flit and the HBM burst ---------------------------------------------------------------
@pytest.mark.parametrize("flit", [16, 64, 128, 256])
def test_a_flit_that_tiles_the_burst_is_accepted(flit):
    spec = system_spec_from_cfg(
        compose_cfg(f"sim.flit_bytes={flit}", f"sim.read_request_bytes={min(flit, 64)}")
    )
    assert spec.hw.hbm.burst_bytes % spec.sim.flit_bytes == 0


@pytest.mark.parametrize("flit", [100, 192, 512, 1_000_000_000, 8])
def test_a_flit_that_straddles_bursts_or_is_tiny_is_refused(flit):
    message = error_of(f"sim.flit_bytes={flit}", "sim.read_request_bytes=8")
    assert message == (
        "sim.flit_bytes: must be a power of two from 16 to hw.hbm.burst_bytes (256), so that a "
        f"flit lies within one HBM burst; got {flit}"
    )


def test_the_burst_bounds_the_flit_both_ways():
    assert system_spec_from_cfg(compose_cfg("hw.hbm.burst_bytes=512")).sim.flit_bytes == 256
    message = error_of("hw.hbm.burst_bytes=128")  # the default flit no longer fits
    assert message.startswith("sim.flit_bytes: ") and "hw.hbm.burst_bytes (128)" in message
    assert error_of("hw.hbm.burst_bytes=128", "sim.flit_bytes=256").endswith("got 256")


def test_documented_flit_overrides_are_valid():
    """README and docs/ show sim.flit_bytes examples; each must pass the check (except in
    docs/robustness.md, which lists bad input on purpose)."""
    found = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if path.name != "robustness.md":
            found |= set(re.findall(r"sim\.flit_bytes=(\d+)", path.read_text()))
    assert found
    for flit in sorted(found):
        system_spec_from_cfg(compose_cfg(f"sim.flit_bytes={flit}"))


# -- IPCQ rings -------------------------------------------------------------------------------
def test_the_shipped_slot_size_is_above_the_minimum():
    ccl = yaml.safe_load((conf_dir() / "ccl" / "default.yaml").read_text())
    assert ccl["slot_bytes"] >= MIN_SLOT_BYTES
    assert system_spec_from_cfg(compose_cfg(f"ccl.slot_bytes={MIN_SLOT_BYTES}"))


@pytest.mark.parametrize("slot", [1, MIN_SLOT_BYTES - 1])
def test_a_slot_below_a_cache_line_is_refused(slot):
    assert error_of(f"ccl.slot_bytes={slot}").startswith(
        f"ccl.slot_bytes: must be at least {MIN_SLOT_BYTES} bytes"
    )


@pytest.mark.parametrize(
    ("buffer", "capacity_key"),
    [("tcm", "hw.pe.tcm_bytes"), ("sram", "hw.cube.sram_bytes"), ("hbm", "hw.hbm.slice_bytes")],
)
def test_a_ring_must_fit_the_memory_it_lives_in(buffer, capacity_key):
    capacity = 1 << 20
    fits = system_spec_from_cfg(
        compose_cfg(
            f"ccl.buffer={buffer}", "ccl.slots=4", f"ccl.slot_bytes={capacity // 4}",
            f"{capacity_key}={capacity}",
        )
    )  # fmt: skip
    assert fits.ccl.slots * fits.ccl.slot_bytes == capacity
    message = error_of(
        f"ccl.buffer={buffer}", "ccl.slots=4", f"ccl.slot_bytes={capacity // 4 + 1}",
        f"{capacity_key}={capacity}",
    )  # fmt: skip
    assert message.startswith("ccl.slot_bytes: a ring of 4 slots (ccl.slots)")
    assert f"({capacity_key} = 1 MiB)" in message
    assert message.endswith(f"use at most {capacity // 4} bytes per slot")


# -- a bench's own check against the system ---------------------------------------------------
@dataclass(frozen=True)
class SizedParams:
    size_bytes: int = 1024

    def check_spec(self, spec: SystemSpec) -> None:
        if self.size_bytes > spec.hw.pe.tcm_bytes:
            raise BenchError(f"bench.size_bytes: more than hw.pe.tcm_bytes, got {self.size_bytes}")


SIZED = BenchInfo("sized", SizedParams, lambda ctx, params: None, "")


def test_bench_params_check_themselves_against_the_system_when_given_it():
    cfg = compose_cfg("bench=probe", "~bench.case", "~bench.sweep", "~bench.congestion",
                      "bench.size_bytes=1000000000")  # fmt: skip
    spec = system_spec_from_cfg(cfg)
    assert bench_params_from_cfg(cfg, SIZED).size_bytes == 1_000_000_000  # no spec: no check
    with pytest.raises(BenchError, match=r"^bench\.size_bytes: more than hw\.pe\.tcm_bytes"):
        bench_params_from_cfg(cfg, SIZED, spec)
    ok = compose_cfg("bench=probe", "~bench.case", "~bench.sweep", "~bench.congestion")
    assert bench_params_from_cfg(ok, SIZED, spec).size_bytes == 32768
