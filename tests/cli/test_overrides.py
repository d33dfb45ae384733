"""A misspelt bench parameter on the command line is named with the bench's valid parameters,
before Hydra would suggest adding it with ``+``; a preset a group does not have is named with
the group's presets, before Hydra's multi-line error."""

import yaml
from tracking_helpers import SEARCHPATH, run_kernbench

from kernbench.cli.overrides import unknown_bench_keys, unknown_presets
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


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def test_an_unknown_preset_is_named_with_the_group_s_presets():
    message = unknown_presets(["topology=5x5", "bench=probe"])
    assert message == f"topology: no preset '5x5'; valid: {', '.join(presets('topology'))}"


def test_a_near_miss_gets_a_suggestion_and_a_far_one_none():
    assert "fast_hbm" in presets("hw")
    assert unknown_presets(["hw=fastHBM"]).endswith("(did you mean fast_hbm?)")
    assert "did you mean" not in unknown_presets(["hw=zzz"])


def test_every_value_of_a_sweep_and_an_added_group_are_checked():
    assert unknown_presets(["-m", "topology=2x2,5x5"]).startswith("topology: no preset '5x5'")
    assert unknown_presets(["-m", "topology=2x2,4x4"]) is None
    assert unknown_presets(["+topology=5x5"]).startswith("topology: no preset '5x5'")


def test_presets_on_the_searchpath_and_of_hydra_plugins_are_known():
    assert unknown_presets(["bench=tiny"]).startswith("bench: no preset 'tiny'")
    assert unknown_presets([SEARCHPATH, "bench=tiny"]) is None
    assert unknown_presets(["hydra/launcher=joblib"]) is None  # Hydra's joblib plugin
    message = unknown_presets(["hydra/launcher=nosuch"])
    assert message.startswith("hydra/launcher: no preset 'nosuch'; valid: ")
    assert "basic" in message and "joblib" in message


def test_keys_deletions_and_other_config_sources_are_left_alone():
    assert unknown_presets(["device=all", "topology.mesh_w=3", "bench.m=1", "~tracking"]) is None
    assert unknown_presets(["--config-dir", "/elsewhere", "topology=5x5"]) is None
    assert unknown_presets(["--cfg", "job"]) is None
