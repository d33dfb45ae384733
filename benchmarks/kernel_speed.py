"""Speed of kernel benches: wall time, simulated events per second and peak memory.

Run: ``.venv/bin/python benchmarks/kernel_speed.py`` (figures go to docs/performance.md). Each
bench runs ``--repeat`` times as a whole ``python -m kernbench`` command with tracking off, in a
fresh process; the best command wall time is kept together with the run's own ``wall_s`` (the
bench alone, without interpreter start-up and imports), the child's CPU time (user + system:
less sensitive than wall time to other load on the machine), its ``sim_events`` and its peak
resident memory (``ru_maxrss``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (
    ("qkv_gemm", "4x4", ()),
    ("qkv_gemm_multi_pe", "4x4", ()),
    ("ccl_allreduce", "4x4_6sip", ()),
    ("tp_mlp", "4x4_2sip", ()),
)


# Runs the command in the child and reports the child's own peak RSS (KiB) on stderr.
CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['kernbench', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('kernbench', run_name='__main__')\n"
    "finally:\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    print('MAXRSS=%d CPU=%.3f' % (r.ru_maxrss, r.ru_utime + r.ru_stime), file=sys.stderr)\n"
)


def run_once(bench: str, topology: str, extra: tuple[str, ...], workdir: Path) -> dict:
    """One command in a fresh process: its wall time, its summary and its peak RSS (MiB)."""
    cmd = [
        sys.executable, "-c", CHILD, f"bench={bench}", f"topology={topology}",
        "tracking=off", f"hydra.run.dir={workdir}", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stdout}\n{proc.stderr}")
    summary = json.loads((workdir / "summary.json").read_text())
    tail = proc.stderr.rsplit("MAXRSS=", 1)[1].split()
    rss_kib, cpu_s = int(tail[0]), float(tail[1].removeprefix("CPU="))
    return {"command_s": wall, "cpu_s": cpu_s, "summary": summary, "rss_mib": rss_kib / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of benches to run (default: all)")
    args = ap.parse_args()
    only = {b for b in args.only.split(",") if b}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bench, topo, extra in CASES:
            if only and bench not in only:
                continue
            best = None
            for i in range(args.repeat):
                res = run_once(bench, topo, extra, Path(tmp) / f"{bench}-{i}")
                if best is None or res["command_s"] < best["command_s"]:
                    best = res
            assert best is not None
            s = best["summary"]
            rows.append(
                (
                    bench,
                    topo,
                    best["command_s"],
                    best["cpu_s"],
                    s["wall_s"],
                    s["sim_events"],
                    s["sim_events"] / s["wall_s"],
                    best["rss_mib"],
                )
            )
    head = (
        "bench",
        "topology",
        "command s",
        "CPU s",
        "run wall_s",
        "events",
        "events/s",
        "peak RSS MiB",
    )
    print("| " + " | ".join(head) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b, t, cmd_s, cpu_s, wall_s, ev, eps, rss in rows:
        cells = (b, t, f"{cmd_s:.2f}", f"{cpu_s:.2f}", f"{wall_s:.2f}", f"{ev:,}", f"{eps:,.0f}")
        print("| " + " | ".join(cells) + f" | {rss:.0f} |")


if __name__ == "__main__":
    main()
