"""A run's name shows the topology that runs (ADR 0019): the preset's name for every shipped
preset, the shape when an override changes it (``topology=4x4 topology.mesh_w=3`` is 3x4)."""

import pytest
from mlflow.tracking import MlflowClient
from tracking_helpers import TESTS_DIR, TINY, compose_cfg, run_in_process, sqlite_uri

from kernbench.cli.main import topology_label
from kernbench.config import conf_dir, flatten, normalized

PRESETS = sorted(p.stem for p in (conf_dir() / "topology").glob("*.yaml"))


def label(*overrides: str) -> str:
    return topology_label(flatten(normalized(compose_cfg("tracking=off", *overrides))))


@pytest.mark.parametrize("preset", PRESETS)
def test_a_shipped_preset_is_named_by_its_own_name(preset):
    assert label(f"topology={preset}") == preset


@pytest.mark.parametrize(
    ("overrides", "shape"),
    [
        (("topology=4x4", "topology.mesh_w=3"), "3x4"),
        (("topology=8x8", "topology.mesh_h=2"), "8x2"),
        (("topology=4x4_2sip", "topology.sips=3"), "4x4_3sip"),
        (("topology=4x4_2sip", "topology.sips=1"), "4x4"),
    ],
)
def test_an_overridden_shape_is_named_by_what_runs(overrides, shape):
    assert label(*overrides) == shape


def test_the_logged_run_carries_the_shape(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    store = sqlite_uri(tmp_path / "mlflow.db")
    cfg = compose_cfg(*TINY, "topology.mesh_w=3", f"tracking.uri={store}")
    outcome, output = run_in_process(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert outcome.exit_code == 0, output
    run = MlflowClient(tracking_uri=store).get_run(outcome.summary["mlflow"]["run_id"])
    assert run.info.run_name == f"tiny-3x2-{outcome.summary['config_hash']}"
