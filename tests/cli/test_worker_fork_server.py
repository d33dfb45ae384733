"""The joblib launcher's workers start from a fork server that has imported kernbench (and
mlflow when tracking is on) once, with its heap frozen (kernbench.cli.sweep.warm_workers).

Each case runs in a fresh interpreter: the start method and the fork server are process-wide.
"""

import json
import subprocess
import sys

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"

PROBE = """
import json, sys
from omegaconf import OmegaConf
from joblib.externals.loky.backend import context
from kernbench.cli.sweep import warm_workers

launcher = json.loads(sys.argv[1])
cfg = OmegaConf.create({"hydra": {"launcher": launcher}})
uri = sys.argv[2] or None
first = warm_workers(cfg, uri)
second = warm_workers(cfg, uri)
result = {"first": first, "second": second, "method": context.get_start_method()}
if first and sys.argv[3] == "run":
    from joblib import Parallel, delayed

    def inside(launcher_pid):
        import gc, os, sys
        return [os.getpid() != launcher_pid, "kernbench.cli.main" in sys.modules,
                "mlflow" in sys.modules, gc.get_freeze_count() > 1000]

    import os
    result["worker"] = Parallel(n_jobs=2)(delayed(inside)(os.getpid()) for _ in range(2))[0]
print(json.dumps(result))
"""


def probe(launcher: dict, uri: str = "", run: bool = False) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(launcher), uri, "run" if run else ""],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_joblib_workers_fork_from_a_server_with_kernbench_loaded_and_frozen():
    result = probe({"_target_": JOBLIB, "n_jobs": 1}, run=True)
    assert result["first"] is True
    assert result["second"] is False  # the start method is chosen once per process
    assert result["method"] == "forkserver"
    # In a worker process: kernbench was imported before the fork, mlflow was not (no
    # tracking URI), and the heap the worker inherited is frozen.
    assert result["worker"] == [True, True, False, True]


def test_with_tracking_the_fork_server_loads_mlflow_too():
    result = probe({"_target_": JOBLIB, "n_jobs": 1}, "sqlite:///unused.db", run=True)
    assert result["method"] == "forkserver"
    assert result["worker"] == [True, True, True, True]


def test_other_launchers_and_backends_keep_their_start_method():
    for launcher in (
        {"_target_": BASIC},
        {"_target_": JOBLIB, "prefer": "threads"},
        {"_target_": JOBLIB, "backend": "multiprocessing"},
    ):
        result = probe(launcher)
        assert (result["first"], result["method"]) == (False, None), launcher
