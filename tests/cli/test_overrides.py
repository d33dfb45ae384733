"""A misspelt bench parameter on the command line is named with the bench's valid parameters,
before Hydra would suggest adding it with ``+``."""

import yaml
from tracking_helpers import run_kernbench

from kernbench.cli.overrides import unknown_bench_keys
from kernbench.config.system import conf_dir


def params_of(bench: str) -> list[str]:
    data = yaml.safe_load((conf_dir() / "bench" / f"{bench}.yaml").read_text())
    return [k for k in data if k != "name"]


def test_an_unknown_key_of_the_chosen_bench_is_named_with_the_valid_ones():
    message = unknown_bench_keys(["bench=probe", "topology=2x2", "bench.sise_bytes=4096"])
    assert message == (
        "bench.sise_bytes: bench 'probe' has no parameter 'sise_bytes'; "
        f"valid: {', '.join(params_of('probe'))}"
    )


def test_without_a_bench_choice_the_default_bench_is_checked():
    default = yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]
    bench = next(item["bench"] for item in default if isinstance(item, dict) and "bench" in item)
    message = unknown_bench_keys(["bench.bogus=1"])
    assert message is not None and message.startswith(f"bench.bogus: bench {bench!r} ")


def test_every_bench_of_a_sweep_must_have_the_key():
    assert "size_bytes" in params_of("probe") and "size_bytes" not in params_of("gemm")
    message = unknown_bench_keys(["-m", "bench=probe,gemm", "bench.size_bytes=1024"])
    assert message is not None and "bench 'gemm' has no parameter 'size_bytes'" in message


def test_valid_added_removed_and_unknown_benches_are_left_to_hydra():
    assert unknown_bench_keys(["bench=probe", "bench.size_bytes=1024,2048", "-m"]) is None
    assert unknown_bench_keys(["bench=probe", "+bench.bogus=1"]) is None  # the bench rejects it
    assert unknown_bench_keys(["bench=probe", "~bench.sweep"]) is None
    assert unknown_bench_keys(["bench=not_shipped", "bench.x=1"]) is None
    assert unknown_bench_keys(["--cfg", "job", "bench=probe"]) is None


def test_the_command_exits_2_with_the_message(tmp_path):
    proc = run_kernbench(tmp_path, "bench=probe", "bench.bogus=1", "tracking=off")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: bench.bogus: bench 'probe' has no parameter 'bogus'; "
        f"valid: {', '.join(params_of('probe'))}"
    )
    assert not (tmp_path / "outputs").exists()  # nothing ran
