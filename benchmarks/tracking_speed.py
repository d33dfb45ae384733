"""Cost of MLflow tracking and speed-up of parallel sweeps.

Run: ``.venv/bin/python benchmarks/tracking_speed.py`` (figures go to docs/performance.md).
Everything runs in a temporary directory with its own SQLite store.

1. Per-run tracking overhead in one process (store exists, mlflow imported): the same bench
   ``--runs`` times with tracking on and off, through ``kernbench.cli.run``.
2. Whole-command cost: ``python -m kernbench`` with tracking on (store exists) and off.
3. An 8-job sweep with the basic (sequential) launcher and with joblib on 2 workers;
   ``--sweeps N`` runs each N times, the two launchers interleaved; it reports the fastest of
   each and the median of the rounds' speed-ups (basic over joblib within one round).
   ``--only-sweeps`` skips parts 1 and 2.
"""

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console

from kernbench.cli import run
from kernbench.config import conf_dir

BENCH = ["bench=probe", "topology=2x2", "bench.sweep=false"]
# Eight full default probes (about 3 s of simulation each), as a typical sweep job.
SWEEP = [
    "bench=probe",
    "topology=4x4",
    "bench.size_bytes=16384,32768,65536,131072",
    "hw.hbm.pc_bw_gbs=16,32",
]


def in_process(tmp: Path, runs: int) -> tuple[float, float]:
    uri = f"sqlite:///{tmp / 'inproc.db'}"
    times = {"on": [], "off": []}
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfgs = {
            "on": compose("config", [*BENCH, f"tracking.uri={uri}"]),
            "off": compose("config", [*BENCH, "tracking=off"]),
        }
    quiet = Console(file=io.StringIO())
    run(cfgs["on"], tmp / "warm", console=quiet, err_console=quiet)  # import + create store
    for i in range(runs):
        for mode in ("on", "off"):
            t0 = time.perf_counter()
            run(cfgs[mode], tmp / f"{mode}{i}", console=quiet, err_console=quiet)
            times[mode].append(time.perf_counter() - t0)
    return statistics.median(times["on"]), statistics.median(times["off"])


def command(tmp: Path, *overrides: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "kernbench", *overrides], cwd=tmp, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {overrides}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(20_000_000): x += i\n"


def machine_ceiling() -> float:
    """Speed-up of two CPU-bound Python processes over one: what 2 workers can gain here."""
    cmd = [sys.executable, "-c", SPIN]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    for p in procs:
        p.wait()
    two = time.perf_counter() - t0
    return 2 * one / two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sweeps", type=int, default=1, help="run each sweep this often, keep the fastest"
    )
    parser.add_argument("--only-sweeps", action="store_true", help="skip parts 1 and 2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("| measurement | seconds |")
        print("| --- | ---: |")
        command(tmp, *BENCH)  # creates the default store
        if not args.only_sweeps:
            on, off = in_process(tmp, args.runs)
            print(f"| one run in process, tracking off (median of {args.runs}) | {off:.3f} |")
            print(f"| one run in process, tracking on (median of {args.runs}) | {on:.3f} |")
            print(f"| tracking overhead per run in process | {on - off:.3f} |")
            cmd_on = min(command(tmp, *BENCH) for _ in range(2))
            cmd_off = min(command(tmp, *BENCH, "tracking=off") for _ in range(2))
            print(f"| `python -m kernbench`, tracking off | {cmd_off:.3f} |")
            print(f"| `python -m kernbench`, tracking on (store exists) | {cmd_on:.3f} |")
            print(f"| tracking overhead per command | {cmd_on - cmd_off:.3f} |")
        print(f"| machine ceiling: 2 CPU-bound processes vs 1 | {machine_ceiling():.2f}x |")
        best = f" (best of {args.sweeps})" if args.sweeps > 1 else ""
        for tracking in ("tracking=off", "tracking=local"):
            seqs, pars = [], []
            for _ in range(args.sweeps):  # interleaved, so both see the same machine
                seqs.append(command(tmp, "-m", *SWEEP, tracking, "hydra/launcher=basic"))
                pars.append(
                    command(
                        tmp, "-m", *SWEEP, tracking, "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=2",
                    )
                )  # fmt: skip
            seq, par = min(seqs), min(pars)
            rounds = [s / p for s, p in zip(seqs, pars, strict=True)]
            print(f"| 8-job sweep, {tracking}, basic launcher{best} | {seq:.2f} |")
            print(f"| 8-job sweep, {tracking}, joblib, 2 workers{best} | {par:.2f} |")
            print(f"| speed-up, {tracking}, fastest against fastest | {seq / par:.2f}x |")
            if args.sweeps > 1:
                each = ", ".join(f"{r:.2f}" for r in rounds)
                print(
                    f"| speed-up, {tracking}, median of the rounds ({each}) | "
                    f"{statistics.median(rounds):.2f}x |"
                )


if __name__ == "__main__":
    main()
