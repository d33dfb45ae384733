"""tl.autotune and tl.Config (kernbench/lang/autotune.py, kernbench/runtime/autotuning.py).

On the simulated device, configs that differ only in a known amount of PE work: the fastest is
known in advance, and the gaps between the trials' times are that work in closed form (the
PE's dispatch plus an elementwise add of BLOCK elements on pe_math, from the PeSpec fields).
The choice among measured times, pruning and hooks are checked with a runner whose trial
times are given.
"""

import numpy as np
import pytest

import kernbench.lang as tl
from kernbench.core.errors import AllocationError, KernelError

BLOCK = 1000
REPS = (8, 2, 5)  # the second is the least work


def add_time_ns(topo) -> float:
    """One ``x = x + 1.0`` on a BLOCK of fp32, blocking: dispatch, then BLOCK operations at
    ``math_tflops`` (docs/kernels.md, "Time charged per call")."""
    pe = topo.spec.hw.pe
    return pe.cpu_overhead_ns + pe.scheduler_overhead_ns + BLOCK / (pe.math_tflops * 1e3)


def accumulate(x_ptr, out_ptr, n, REPS: tl.constexpr, BLOCK: tl.constexpr):
    """out += x + REPS (the add repeated REPS times: the work that differs)."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    acc = tl.load(out_ptr + offs, mask=offs < n)
    for _ in range(REPS):
        x = x + 1.0
    tl.store(out_ptr + offs, acc + x, mask=offs < n)


def tuned(fn=accumulate, reps=REPS, **options):
    configs = [tl.Config({"REPS": r}, num_stages=1) for r in reps]
    return tl.autotune(configs, key=["n"], **options)(tl.jit(fn))


@pytest.fixture(scope="module")
def topo(make_topology):
    return make_topology(1, 1)


def setup(new_device, topo, n=BLOCK, start=5.0):
    dev = new_device(topo)
    x = dev.tensor(np.arange(n, dtype=np.float32))
    out = dev.tensor(np.full(n, start, np.float32))
    return dev, x, out


def launch(dev, kernel, x, out, n=BLOCK):
    result = dev.launch(kernel, 1, x, out, n, pes=[(0, 0)], BLOCK=BLOCK)
    dev.synchronize()
    return result


def kernel_ns(lau) -> float:
    return max(t.end_ns for t in lau.pes) - lau.start_ns


# -- on the simulated device ---------------------------------------------------------------
def test_the_least_work_wins_and_trial_gaps_are_the_work(topo, new_device):
    dev, x, out = setup(new_device, topo)
    kernel = tuned(restore_value=["out_ptr"])
    final = launch(dev, kernel, x, out)
    assert [c.kwargs["REPS"] for c, _ in final.autotune] == list(REPS)
    times = [t for _, t in final.autotune]
    assert kernel.best_config.kwargs == {"REPS": 2} and kernel.best_config.num_stages == 1
    assert min(times) == times[1]
    step = add_time_ns(topo)
    for c, t in final.autotune:
        assert t - times[1] == pytest.approx((c.kwargs["REPS"] - 2) * step, abs=1e-6)
    # the launch that counts runs the best config: same time as its trial, and its numerics
    assert kernel_ns(final) == pytest.approx(times[1], abs=1e-6)
    assert final.meta["REPS"] == 2 and final.num_stages == 1
    # every trial was a launch of its own, the real one came after them
    assert len(dev.launches) == len(REPS) + 1 and dev.launches[-1] is final
    trial_ns = [kernel_ns(lau) for lau in dev.launches[:-1]]
    assert trial_ns == pytest.approx(times, abs=1e-9)


def test_restore_value_undoes_each_trial_without_simulated_time(topo, new_device):
    dev, x, out = setup(new_device, topo)
    final = launch(dev, tuned(restore_value=["out_ptr"]), x, out)
    # out accumulated exactly once: by the final launch (best REPS = 2)
    np.testing.assert_array_equal(out.numpy(), 5.0 + np.arange(BLOCK) + 2)
    # restoring took no simulated time: each launch was issued when the one before completed
    ends = [lau.end_ns for lau in dev.launches[:-1]]
    issues = [lau.issue_ns for lau in dev.launches[1:]]
    assert issues == ends
    assert final.issue_ns == dev.launches[-2].end_ns


def test_without_restore_every_trial_accumulates(topo, new_device):
    dev, x, out = setup(new_device, topo)
    launch(dev, tuned(), x, out)
    expected = 5.0 + sum(np.arange(BLOCK) + r for r in (*REPS, 2))  # three trials, then REPS=2
    np.testing.assert_array_equal(out.numpy(), expected)


def memory_of(dev, tensor) -> np.ndarray:
    """The tensor's bytes in simulated memory (one shard), read without simulated time."""
    (addr,) = tensor.shards[0].copies.values()
    return dev.system.memory.read(addr, tensor.nbytes).view(tensor.dtype)


def test_reset_to_zero_zeroes_before_each_trial_and_the_final_launch(topo, new_device):
    dev, x, out = setup(new_device, topo)
    after_trial = []
    kernel = tuned(
        reset_to_zero=["out_ptr"],
        post_hook=lambda args, exception: after_trial.append(memory_of(dev, out).copy()),
    )
    launch(dev, kernel, x, out)
    for reps, seen in zip(REPS, after_trial, strict=True):  # each trial started from zeros
        np.testing.assert_array_equal(seen, np.arange(BLOCK) + reps)
    np.testing.assert_array_equal(out.numpy(), np.arange(BLOCK) + 2.0)


def test_a_known_key_runs_no_trials_and_a_new_key_tunes_again(topo, new_device):
    dev, x, out = setup(new_device, topo)
    kernel = tuned(restore_value=["out_ptr"])
    launch(dev, kernel, x, out)
    assert len(kernel.cache) == 1
    t0, count = dev.now, len(dev.launches)
    again = launch(dev, kernel, x, out)
    assert again.autotune == [] and len(dev.launches) == count + 1
    assert again.issue_ns == t0  # nothing ran before it
    other = launch(dev, kernel, x, out, n=BLOCK - 1)  # another value of the key
    assert len(other.autotune) == len(REPS) and len(dev.launches) == count + 2 + len(REPS)
    assert len(kernel.cache) == 2
    assert set(kernel.cache) == {(BLOCK, "float32", "float32"), (BLOCK - 1, "float32", "float32")}


def huge(x_ptr, out_ptr, n, REPS: tl.constexpr, BLOCK: tl.constexpr):
    """REPS > 4 asks for a 64 MiB block: more than the 16 MiB TCM."""
    offs = tl.arange(0, BLOCK)
    side = 4096 if REPS > 4 else 8
    big = tl.zeros((side, side), tl.float32)
    x = tl.load(x_ptr + offs, mask=offs < n)
    for _ in range(REPS):
        x = x + 1.0
    tl.store(out_ptr + offs, x + tl.sum(big), mask=offs < n)


def test_a_failing_config_is_skipped(topo, new_device):
    dev, x, out = setup(new_device, topo)
    kernel = tuned(huge, reps=(8, 3, 5))
    final = launch(dev, kernel, x, out)
    assert [t is None for _, t in final.autotune] == [True, False, True]
    assert kernel.best_config.kwargs == {"REPS": 3}
    assert [c.kwargs["REPS"] for c, _ in kernel.failures] == [8, 5]
    assert all("TCM" in msg and "sip0.cube0.pe0" in msg for _, msg in kernel.failures)
    assert kernel.configs_timings[final.autotune[0][0]] == float("inf")
    assert dev.system.pe(0, 0, 0).tcm_used == 0  # the failed programs' blocks were freed
    np.testing.assert_array_equal(out.numpy(), np.arange(BLOCK) + 3.0)


def fails_midway(x_ptr, out_ptr, n, BIG: tl.constexpr):
    """Sums n // 256 chunks of x, pipelined; with BIG, asks for 64 MiB of TCM at the third."""
    offs = tl.arange(0, 256)
    acc = tl.zeros((256,), tl.float32)
    for i in tl.range(0, n // 256):
        x = tl.load(x_ptr + i * 256 + offs)
        if BIG and i == 2:
            tl.zeros((4096, 4096), tl.float32)
        acc += x
    tl.store(out_ptr + offs, acc)


def test_a_pipelined_trial_failing_with_loads_in_flight_frees_its_tcm(topo, new_device):
    dev = new_device(topo)
    x = dev.tensor(np.ones(256 * 8, np.float32))
    out = dev.empty(256, "fp32")
    configs = [tl.Config({"BIG": big}, num_stages=3) for big in (1, 0)]
    kernel = tl.autotune(configs, key=["n"])(tl.jit(fails_midway))
    final = dev.launch(kernel, 4, x, out, 256 * 8, pes=[(0, 0), (0, 1)])
    dev.synchronize()
    assert [t is None for _, t in final.autotune] == [True, False]
    assert [dev.system.pe(0, 0, i).tcm_used for i in (0, 1)] == [0, 0]
    np.testing.assert_array_equal(out.numpy(), np.full(256, 8.0))


def test_every_config_failing_is_an_error_naming_them(topo, new_device):
    dev, x, out = setup(new_device, topo)
    kernel = tuned(huge, reps=(6, 7))
    with pytest.raises(KernelError) as err:
        launch(dev, kernel, x, out)
    msg = str(err.value)
    assert "tl.autotune of huge" in msg and "every config failed" in msg
    assert "REPS=6" in msg and "REPS=7" in msg and "TCM" in msg
    launch(dev, tuned(huge, reps=(1, 2)), x, out)  # the device is still usable
    np.testing.assert_array_equal(out.numpy(), np.arange(BLOCK) + 1.0)


def test_tuning_is_deterministic(topo, new_device):
    runs = []
    for _ in range(2):
        dev, x, out = setup(new_device, topo)
        final = launch(dev, tuned(restore_value=["out_ptr"]), x, out)
        runs.append(([t for _, t in final.autotune], final.end_ns, out.numpy().tolist()))
    assert runs[0] == runs[1]


def blocks(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * 2.0, mask=offs < n)


def test_a_grid_callable_sees_each_config(topo, new_device):
    dev, x, out = setup(new_device, topo, n=1000)
    grids = []

    def grid(meta):
        grids.append(meta["BLOCK"])
        return (tl.cdiv(1000, meta["BLOCK"]),)

    kernel = tl.autotune([tl.Config({"BLOCK": b}) for b in (250, 1000)], key=["n"])(tl.jit(blocks))
    final = dev.launch(kernel, grid, x, out, 1000, pes=[(0, 0), (0, 1), (0, 2), (0, 3)])
    dev.synchronize()
    assert grids == [250, 1000, final.meta["BLOCK"]]
    assert final.grid == (1000 // final.meta["BLOCK"], 1, 1)
    np.testing.assert_array_equal(out.numpy(), 2.0 * np.arange(1000))


# -- the choice, with given trial times ----------------------------------------------------
class Runner:
    """Trial times by REPS (None: the trial fails); records what was asked."""

    def __init__(self, times):
        self.times = times
        self.log = []

    def trial(self, meta):
        self.log.append(("trial", meta["REPS"]))
        t = self.times[meta["REPS"]]
        if t is None:
            raise AllocationError(f"REPS={meta['REPS']} does not fit")
        return t

    def launch(self, meta):
        self.log.append(("launch", meta["REPS"]))
        return meta

    def zero(self, name, value):
        self.log.append(("zero", name))

    def save(self, name, value):
        self.log.append(("save", name))
        return name

    def restore(self, name, value, saved):
        self.log.append(("restore", saved))


def kernel_of(n, x, REPS, TAG=0):
    pass


class Tensorish:
    def __init__(self, dtype):
        self.dtype, self.shape = np.dtype(dtype), (4,)


def test_ties_go_to_the_first_listed_and_failures_are_skipped():
    kernel = tl.autotune([tl.Config({"REPS": r}) for r in (1, 2, 3, 4)], key=["n"])(kernel_of)
    runner = Runner({1: None, 2: 7.0, 3: 5.0, 4: 5.0})
    meta, tried = kernel.run((10, Tensorish("f2")), {}, runner)
    assert meta["REPS"] == 3
    assert [t for _, t in tried] == [None, 7.0, 5.0, 5.0]
    assert runner.log == [("trial", 1), ("trial", 2), ("trial", 3), ("trial", 4), ("launch", 3)]


def test_the_key_is_named_values_then_tensor_dtypes():
    kernel = tl.autotune([tl.Config({"REPS": r}) for r in (1, 2)], key=["n", "x"])(kernel_of)
    assert kernel.key_of({"n": 10, "x": Tensorish("f2"), "REPS": 1}) == (10, "float16", "float16")
    runner = Runner({1: 2.0, 2: 1.0})
    kernel.run((10, Tensorish("f2")), {}, runner)
    kernel.run((10, Tensorish("f2")), {}, runner)
    kernel.run((10, Tensorish("f4")), {}, runner)  # another dtype: tuned again
    assert [e for e in runner.log if e[0] == "trial"] == [("trial", 1), ("trial", 2)] * 2
    assert len(kernel.cache) == 2


def test_pruning_by_early_prune_and_perf_model():
    def early(configs, args, **meta):
        return [c for c in configs if c.kwargs["REPS"] != 1]

    def model(n, x, REPS, **options):
        return {1: 4.0, 2: 3.0, 3: 1.0, 4: 2.0}[REPS]

    prune = {"early_config_prune": early, "perf_model": model, "top_k": 2}
    configs = [tl.Config({"REPS": r}) for r in (1, 2, 3, 4)]
    kernel = tl.autotune(configs, key=["n"], prune_configs_by=prune)(kernel_of)
    runner = Runner({r: float(r) for r in (1, 2, 3, 4)})
    _, tried = kernel.run((10, 0), {}, runner)
    assert [c.kwargs["REPS"] for c, _ in tried] == [3, 4]  # the model's two best, in its order
    # one config left: it is launched without trials
    single = tl.autotune(configs, key=["n"], prune_configs_by={"perf_model": model, "top_k": 1})
    runner = Runner({})
    meta, tried = single(kernel_of).run((10, 0), {}, runner)
    assert tried == [] and meta["REPS"] == 3 and runner.log == [("launch", 3)]


def test_hooks_run_around_each_trial_in_order():
    configs = [tl.Config({"REPS": r}) for r in (1, 2)]
    kernel = tl.autotune(configs, key=["n"], reset_to_zero=["x"], restore_value=["n"])(kernel_of)
    runner = Runner({1: 2.0, 2: 1.0})
    kernel.run((10, 0), {}, runner)
    once = [("zero", "x"), ("save", "n"), None, ("restore", "n")]
    expected = []
    for r in (1, 2):
        expected += [e if e else ("trial", r) for e in once]
    assert runner.log == [*expected, ("zero", "x"), ("launch", 2)]


def test_user_hooks_replace_the_default_ones():
    calls = []
    kernel = tl.autotune(
        [tl.Config({"REPS": r}, pre_hook=lambda a: calls.append(("config", a["REPS"])))
         for r in (1, 2)],
        key=["n"],
        reset_to_zero=["x"],
        pre_hook=lambda a, reset_only=False: calls.append(("pre", a["REPS"], reset_only)),
        post_hook=lambda a, exception: calls.append(("post", a["REPS"], exception is None)),
    )(kernel_of)  # fmt: skip
    runner = Runner({1: None, 2: 1.0})
    kernel.run((10, 0), {}, runner)
    assert calls == [
        ("config", 1), ("pre", 1, False), ("post", 1, False),
        ("config", 2), ("pre", 2, False), ("post", 2, True),
        ("pre", 2, True), ("config", 2),
    ]  # fmt: skip
    assert not any(e[0] == "zero" for e in runner.log)


def test_config_and_decorator_errors():
    c = tl.Config({"BLOCK": 64}, num_stages=2, maxnreg=128)
    assert c.all_kwargs() == {
        "BLOCK": 64, "num_warps": 4, "num_ctas": 1, "num_stages": 2, "maxnreg": 128
    }  # fmt: skip
    assert c == tl.Config({"BLOCK": 64}, num_stages=2, maxnreg=128) != tl.Config({"BLOCK": 64})
    with pytest.raises(KernelError, match="num_stages must be a positive integer, got 0"):
        tl.Config({}, num_stages=0)
    with pytest.raises(KernelError, match="key names 'm', which is not a parameter"):
        tl.autotune([tl.Config({"REPS": 1})], key=["m"])(kernel_of)
    with pytest.raises(KernelError, match=r"config Config\(BLOCK=64.*sets 'BLOCK'"):
        tl.autotune([c], key=["n"])(kernel_of)
    kernel = tl.autotune([tl.Config({"REPS": 1}), tl.Config({"REPS": 2})], key=["n"])(kernel_of)
    with pytest.raises(KernelError, match="REPS given to the launch and set by"):
        kernel.run((10, 0), {"REPS": 3}, Runner({}))
    none = {"early_config_prune": lambda *a, **k: []}
    kernel = tl.autotune(kernel.configs, key=["n"], prune_configs_by=none)(kernel_of)
    with pytest.raises(KernelError, match="early_config_prune left no config"):
        kernel.run((10, 0), {}, Runner({}))
    with pytest.raises(KernelError, match="launch of kernel_of: got an unexpected keyword"):
        kernel.run((10, 0), {"BLOCK": 3}, Runner({}))
