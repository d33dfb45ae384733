"""Bad input on the command line (issue 17): each is refused before anything is simulated, with
exit code 2 and one ``error: <key>: ...`` line naming the key to change. The 10 s timeout is the
issue's bound on how long a refusal may take, not a measurement; tracking is off so that MLflow's
start-up is not part of it."""

import subprocess
import sys
from pathlib import Path

import pytest

from kernbench.config import conf_dir

REFUSE_WITHIN_S = 10


def presets(group: str) -> str:
    """The presets of a config group as the error lists them, read from conf/."""
    return ", ".join(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))


def kernbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kernbench", "tracking=off", f"hydra.run.dir={tmp_path}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=REFUSE_WITHIN_S,
    )


# (command line, the key named, fragments the line must hold)
BAD_INPUT = [
    (("bench=ipcq_allreduce", "ccl.slot_bytes=1"), "ccl.slot_bytes", ("at least 64 bytes",)),
    (
        ("topology.mesh_w=1000", "topology.mesh_h=1000"),
        "topology.mesh_w",
        ("between 1 and 32", "got 1000"),
    ),
    (
        ("bench=gemm", "bench.m=100000", "bench.n=100000", "bench.k=100000"),
        "bench.m",
        ("HBM slice of sip0.cube0.pe0", "hw.hbm.slice_bytes"),
    ),
    (
        (
            "bench=gemm",
            "bench.m=4096",
            "bench.n=4096",
            "bench.k=4096",
            "bench.block_m=4096",
            "bench.block_n=4096",
        ),
        "bench.block_m",
        ("hw.pe.tcm_bytes",),
    ),
    (
        ("bench=probe", "bench.size_bytes=1000000000000000"),
        "bench.size_bytes",
        ("1000000000000000 bytes", "hw.hbm.slice_bytes", "at most"),
    ),
    (("sim.flit_bytes=1000000000",), "sim.flit_bytes", ("hw.hbm.burst_bytes (256)",)),
    (("sim.flit_bytes=100",), "sim.flit_bytes", ("power of two", "got 100")),
    (("topology=5x5",), "topology", (f"no preset '5x5'; valid: {presets('topology')}",)),
    (("bench=nosuch",), "bench", (f"no preset 'nosuch'; valid: {presets('bench')}",)),
    (("hw=fastHBM",), "hw", (f"no preset 'fastHBM'; valid: {presets('hw')}", "fast_hbm?")),
    (("-m", "topology=2x2,5x5"), "topology", ("no preset '5x5'",)),
    (("hw.hbm.pc_bw=48",), "hw.hbm.pc_bw", ("unknown key", "pc_bw_gbs")),
    (("sim.modle=flit",), "sim.modle", ("unknown key; valid: model,",)),
    (("model=nope",), "model", (f"no preset 'nope'; valid: {presets('model')}",)),
    (("model=llama3_8b", "model.heads=3"), "model.heads", ("model.hidden (4096)", "3 * 128")),
    (("model.kv_heads=3",), "model.kv_heads", ("must divide model.heads (4)",)),
    (("model.dtype=int4",), "model.dtype", ("fp16, bf16, fp32", "'int4'")),
    (("model.hedas=3",), "model.hedas", ("unknown key; valid: name, hidden, heads,",)),
    (("nosuchkey=1",), "nosuchkey", ("unknown key", "topology", "device", "+nosuchkey=")),
]


@pytest.mark.parametrize(
    ("args", "key", "fragments"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT]
)
def test_bad_input_exits_2_with_one_line_naming_the_key(tmp_path, args, key, fragments):
    proc = kernbench(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {key}: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
