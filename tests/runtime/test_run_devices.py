"""BenchContext.run_devices: one host program per selected SIP, all in one simulation, as
independent devices that share the host's PCIe link."""

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.bench import BenchContext
from kernbench.topology import SystemSpec, TopologySpec

SPEC = SystemSpec(topology=TopologySpec(name="1x1_2sip", sips=2, mesh_w=1, mesh_h=1))


@tl.jit
def axpy(x_ptr, y_ptr, out_ptr, a, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(
        out_ptr + offs,
        a * tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask),
        mask=mask,
    )


def test_both_devices_run_and_get_their_own_results():
    ctx = BenchContext.from_spec(SPEC, devices=(0, 1))
    n = 700
    x = np.linspace(-1, 1, n, dtype=np.float32)
    y = np.arange(n, dtype=np.float32)

    def program(dev):
        a = float(dev.sip + 2)  # each device computes something different
        tx, ty = dev.tensor(x, placement="row"), dev.tensor(y, placement="row")
        out = dev.empty(n, "fp32", placement="row")
        launch = dev.launch(axpy, tl.cdiv(n, 128), tx, ty, out, a, n, BLOCK=128)
        dev.synchronize()
        sips = {
            dev.system.topology.address.decode_hbm(addr).sip
            for shard in out.shards
            for addr in shard.copies.values()
        }
        return out.numpy(), launch, sips

    results = ctx.run_devices(program)
    assert [dev.sip for dev, _ in results] == [0, 1]
    assert len(ctx.systems) == 1  # one simulation for both
    for dev, (out, launch, sips) in results:
        np.testing.assert_array_equal(out, np.float32(dev.sip + 2) * x + y)
        assert sips == {dev.sip}
        assert {p.name.split(".")[0] for p in launch.pes} == {dev.name}
        assert launch.end_ns > launch.start_ns > 0


def test_device_selection_runs_only_the_chosen_sip():
    ctx = BenchContext.from_spec(SPEC, devices=(1,))
    results = ctx.run_devices(lambda dev: dev.name)
    assert [(dev.sip, name) for dev, name in results] == [(1, "sip1")]


def test_devices_share_the_host_link():
    """Deploying 256 KiB to each SIP at once takes longer than to one alone: the host's PCIe
    link carries both (at least 2 x bytes / bandwidth for the later one)."""
    data = np.arange(1 << 16, dtype=np.float32)  # 256 KiB
    pcie_bw_gbs = SPEC.hw.host.pcie_bw_gbs

    def deploy(dev):
        t0 = dev.now
        t = dev.tensor(data, placement="row")
        took = dev.now - t0
        np.testing.assert_array_equal(t.numpy(), data)
        return took

    alone = {
        sip: BenchContext.from_spec(SPEC, devices=(sip,)).run_devices(deploy)[0][1]
        for sip in (0, 1)
    }
    together = [
        took for _, took in BenchContext.from_spec(SPEC, devices=(0, 1)).run_devices(deploy)
    ]
    assert alone[0] == pytest.approx(alone[1])  # symmetric SIPs
    assert alone[0] >= data.nbytes / pcie_bw_gbs
    assert max(together) > 1.5 * alone[0]
    assert max(together) >= 2 * data.nbytes / pcie_bw_gbs
    assert min(together) >= alone[0] - 1e-9
