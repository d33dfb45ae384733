"""Bad host calls: each raises a KernbenchError naming the object, the sizes and what is valid."""

import dataclasses

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.core.errors import AllocationError, ConfigError, KernelError
from kernbench.hw import HbmSpec, HwSpec
from kernbench.runtime import Device, Hub, Placement, System
from kernbench.topology import SystemSpec, Topology, TopologySpec


@tl.jit
def two_args(x_ptr, n, BLOCK: tl.constexpr):
    pass


@pytest.mark.parametrize(
    "pes, expected",
    [
        ([(4, 0)], "launch of two_args: cube 4 does not exist; sip0 has cubes 0-3"),
        ([(0, 0), (-1, 0)], "cube -1 does not exist"),
        ([(1, 8)], "launch of two_args: PE 8 does not exist; each cube has PEs 0-7"),
        ([(0, 0), (0, 0)], "a PE is listed twice in pes"),
        ([3], "pes must be (cube, pe) pairs, got 3"),
        ([], "no PEs to run on"),
    ],
)
def test_launch_on_pes_the_topology_does_not_have(topo2x2, new_device, pes, expected):
    dev = new_device(topo2x2)
    x = dev.empty(4, "fp32")
    with pytest.raises(KernelError) as err:
        dev.launch(two_args, 1, x, 4, BLOCK=4, pes=pes)
    assert expected in str(err.value)
    assert dev.launches == [] and dev.now == 0.0  # nothing was sent


@pytest.mark.parametrize(
    "args, meta, expected",
    [
        ((), {"BLOCK": 4}, "missing a required argument: 'n'"),
        ((4, 5, 6), {}, "too many positional arguments"),
        ((4,), {"BLOCK": 4, "BLOCK_M": 4}, "unexpected keyword argument 'BLOCK_M'"),
    ],
    ids=["missing", "too-many", "unknown-meta"],
)
def test_launch_with_wrong_kernel_arguments(topo1x1, new_device, args, meta, expected):
    dev = new_device(topo1x1)
    x = dev.empty(4, "fp32")
    with pytest.raises(KernelError) as err:
        dev.launch(two_args, 1, x, *args, **meta)
    assert "launch of two_args" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    "grid, expected",
    [
        (0, "1 to 3 dimensions >= 1, got (0,)"),
        ((1, 1, 1, 1), "got (1, 1, 1, 1)"),
        ("x", "an int or a tuple of ints, got 'x'"),
        (None, "an int or a tuple of ints, got None"),
    ],
)
def test_launch_with_a_bad_grid(topo1x1, new_device, grid, expected):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match="grid") as err:
        dev.launch(two_args, grid, dev.empty(1, "fp32"), 1, BLOCK=1)
    assert expected in str(err.value)


def test_launch_of_something_that_is_not_a_function(topo1x1, new_device):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match="is not a function"):
        dev.launch("two_args", 1)


def test_tensor_of_another_device(make_topology):
    topo = make_topology(1, 1, sips=2)
    system = System(topology=topo)
    hub = Hub(system.sim)
    dev0, dev1 = Device(system, hub, 0), Device(system, hub, 1)
    x = dev1.empty(4, "fp32", name="remote")
    with pytest.raises(KernelError, match=r"tensor 'remote' lives on sip1"):
        dev0.launch(two_args, 1, x, 4, BLOCK=4)
    with pytest.raises(KernelError, match=r"no SIP 2; this topology has 2 SIP\(s\)"):
        Device(system, hub, 2)


# -- HBM -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_hbm():
    """One cube whose HBM slices hold 4 KiB each."""
    hw = dataclasses.replace(HwSpec(), hbm=HbmSpec(slice_bytes=4096))
    return Topology(SystemSpec(topology=TopologySpec(name="1x1", mesh_w=1, mesh_h=1), hw=hw))


def test_tensor_larger_than_an_hbm_slice(tiny_hbm, new_device):
    dev = new_device(tiny_hbm)
    with pytest.raises(AllocationError) as err:
        dev.tensor(np.zeros((3, 1000), np.float32), name="weights")
    msg = str(err.value)
    assert "tensor 'weights'" in msg and "rows 0:3 cols 0:1000" in msg
    assert "(12000 B)" in msg  # 3 x 1000 x 4 bytes
    assert "sip0.cube0.pe0" in msg and "4 KiB capacity" in msg and "hw.hbm.slice_bytes" in msg
    # spread by rows over three slices, each third fits
    t = dev.tensor(np.ones((3, 1000), np.float32), placement=Placement(pes="row", pe_ids=(0, 1, 2)))
    np.testing.assert_array_equal(t.numpy(), np.ones((3, 1000), np.float32))


def test_a_failed_allocation_leaves_no_partial_shards(tiny_hbm, new_device):
    dev = new_device(tiny_hbm)
    dev.empty(1024, "fp32", placement=Placement.single(0, 1))  # slice of PE 1 is now full
    with pytest.raises(AllocationError, match="sip0.cube0.pe1: 4 KiB capacity, 0 B free"):
        dev.empty((2, 1024), "fp32", placement=Placement(pes="row", pe_ids=(0, 1)))
    # the shard that did fit in PE 0's slice was given back: the whole slice is free again
    dev.empty(1024, "fp32", placement=Placement.single(0, 0))


def test_free_gives_the_slice_back(tiny_hbm, new_device):
    dev = new_device(tiny_hbm)
    t = dev.tensor(np.arange(1024, dtype=np.int32), name="first")
    with pytest.raises(AllocationError):
        dev.empty(1, "int8")
    dev.free(t)
    with pytest.raises(KernelError, match="tensor 'first' was freed"):
        t.numpy()
    second = dev.tensor(np.arange(1024, dtype=np.int32) * 3)
    np.testing.assert_array_equal(second.numpy(), np.arange(1024, dtype=np.int32) * 3)


@pytest.mark.parametrize(
    "dtype, expected",
    [
        ("fp64", "unknown dtype 'fp64'; use one of fp16"),
        ("float8", "unknown dtype 'float8'"),
        (np.float64, "unsupported dtype float64"),
        (np.uint16, "unsupported dtype uint16"),
    ],
)
def test_unknown_dtype(topo1x1, new_device, dtype, expected):
    dev = new_device(topo1x1)
    with pytest.raises(ConfigError) as err:
        dev.empty(4, dtype)
    assert str(err.value).startswith("dtype: ") and expected in str(err.value)
    with pytest.raises(ConfigError, match="unsupported dtype float64"):
        dev.tensor(np.zeros(4))  # NumPy's default float64 is not a device dtype


@pytest.mark.parametrize("shape", [(0,), (4, 0), ()])
def test_empty_shapes_are_refused(topo1x1, new_device, shape):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match="tensor shape must have dims >= 1"):
        dev.empty(shape, "fp32")


def test_placement_on_a_cube_the_device_does_not_have(topo1x1, new_device):
    dev = new_device(topo1x1)
    with pytest.raises(KernelError, match=r"placement of tensor 'w': cube 1 does not exist"):
        dev.empty(4, "fp32", placement=Placement(cubes="row", cube_ids=(0, 1)), name="w")
    with pytest.raises(KernelError, match=r"PE 9 does not exist; each cube has PEs 0-7"):
        dev.empty(4, "fp32", placement=Placement.single(0, 9))
