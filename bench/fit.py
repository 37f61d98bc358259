"""The `fit` section of bench/run.py: the 27 NIST StRD problems (tests/data/nist/), fitted from
NIST's start 1.

In process, each model compiled once beforehand: `dsl`'s `lm` (dsl.training.train.fit, with its history,
counts and checks) against `scipy.optimize.least_squares` called directly on the same generated
residuals, given the exact generated Jacobian (method 'lm', the same scaling and tolerances as
dsl's lm) and given 2-point finite differences (method 'lm', scipy's default tolerances, as a
user would call it). The fastest of a few interleaved repeats (on a loaded machine the others
measure the load); correct digits of each.
Then `python -m dsl run` of a few NIST models, wall and CPU time of a fresh process including
the compile: cold (no cache) and cached, the fastest of a few repeats, interleaved with a
baseline process that only imports what any fit needs (`python -c "import numpy,
scipy.optimize"`), so that the load of the machine can be told from dsl's own time.
"""
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.optimize as so

from dsl.model import load
from dsl.training.train import choose_optimizer, fit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NIST = os.path.join(ROOT, "tests", "data", "nist")
CLI_PROBLEMS = ["Misra1a", "Thurber", "ENSO", "Bennett5"]


def digits(x, certified) -> float:
    """The fewest correct significant digits over the params (LRE, at most 11)."""
    out = 11.0
    for v, c in zip(x, certified):
        if v != c:
            out = min(out, -math.log10(abs(v - c) / abs(c)) if np.isfinite(v) else 0.0)
    return max(out, 0.0)


def _median(xs):
    return float(np.median(xs))


BASELINE = "import numpy, scipy.optimize"


def bench_fit(cfg, log):
    certified = json.load(open(os.path.join(NIST, "certified.json")))
    rows = []
    log("NIST StRD fits from start 1: dsl lm against scipy least_squares (exact Jacobian, finite differences)")
    for name, c in certified.items():
        model = load(os.path.join(NIST, f"{name}.model"))
        mod, train = model.module, model.dataset().train
        names = list(mod.PARAMS)
        start = np.array([c["start1"][k] for k in names])
        want = [c["certified"][k] for k in names]
        config = choose_optimizer(model.checked.train, mod, model.params)
        tol = {k: config.optimizer.args[k] for k in ("ftol", "xtol", "gtol")}

        def unpack(x):
            return {k: np.asarray(v) for k, v in zip(names, x)}

        def r(x):
            return mod.residuals(unpack(x), train)

        def j(x):
            return mod.jacobian(unpack(x), train)

        def run_dsl():
            params = {k: np.array(v) for k, v in zip(names, start)}
            fit(mod, params, train, None, config)
            return np.array([float(params[k]) for k in names])

        def run_exact():
            return so.least_squares(r, start, jac=j, method="lm", x_scale="jac", max_nfev=1000,
                                    **tol).x

        def run_fd():
            return so.least_squares(r, start, method="lm").x

        fns = {"dsl": run_dsl, "scipy_exact": run_exact, "scipy_fd": run_fd}
        times = {k: [] for k in fns}
        cpu = {k: [] for k in fns}
        results = {}
        with np.errstate(all="ignore"):
            for rep in range(cfg["fit_repeats"]):
                for k in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
                    t, c0 = time.perf_counter(), time.process_time()
                    results[k] = fns[k]()
                    times[k].append(time.perf_counter() - t)
                    cpu[k].append(time.process_time() - c0)
        row = {"problem": name, "level": c["level"], "params": len(names),
               "observations": c["observations"]}
        for k in fns:
            row[f"{k}_ms"] = min(times[k]) * 1e3
            row[f"{k}_cpu_ms"] = min(cpu[k]) * 1e3
            row[f"{k}_digits"] = digits(results[k], want)
        row["ratio_to_exact"] = row["dsl_ms"] / row["scipy_exact_ms"]
        row["cpu_ratio_to_exact"] = row["dsl_cpu_ms"] / row["scipy_exact_cpu_ms"]
        rows.append(row)
        log(f"  {name:9s} dsl {row['dsl_ms']:7.2f} ms ({row['dsl_digits']:4.1f} digits)  "
            f"scipy exact {row['scipy_exact_ms']:7.2f} ms ({row['scipy_exact_digits']:4.1f})  "
            f"scipy fd {row['scipy_fd_ms']:7.2f} ms ({row['scipy_fd_digits']:4.1f})  "
            f"x{row['ratio_to_exact']:.2f} (CPU x{row['cpu_ratio_to_exact']:.2f})")
    log("python -m dsl run of NIST models, a fresh process, wall time including the compile; "
        f"baseline: python -c \"{BASELINE}\"")
    cli = [_cli(name, cfg["fit_cli_repeats"]) for name in CLI_PROBLEMS]
    for c in cli:
        log(f"  {c['problem']:9s} cold {c['cold_s']:.3f} s (CPU {c['cold_cpu_s']:.3f} s)  "
            f"cached {c['cached_s']:.3f} s (CPU {c['cached_cpu_s']:.3f} s)  "
            f"baseline {c['baseline_s']:.3f} s (CPU {c['baseline_cpu_s']:.3f} s)")
    ratios = [r["ratio_to_exact"] for r in rows]
    cpu_ratios = [r["cpu_ratio_to_exact"] for r in rows]
    return {"rows": rows, "cli": cli, "median_ratio_to_exact": _median(ratios),
            "max_ratio_to_exact": max(ratios), "median_cpu_ratio_to_exact": _median(cpu_ratios),
            "max_cpu_ratio_to_exact": max(cpu_ratios),
            "dsl_six_digits": sum(r["dsl_digits"] >= 6 for r in rows),
            "exact_six_digits": sum(r["scipy_exact_digits"] >= 6 for r in rows),
            "fd_six_digits": sum(r["scipy_fd_digits"] >= 6 for r in rows)}


def _cli(name: str, repeats: int) -> dict:
    """Wall and CPU time of `python -m dsl run NIST.model` in a fresh process: the first with an
    empty cache (a cold compile), then cached; and of the baseline process beside them. The
    fastest of `repeats`."""
    path = os.path.join(NIST, f"{name}.model")
    times = {k: [] for k in ("cold", "cached", "baseline", "cold_cpu", "cached_cpu",
                             "baseline_cpu")}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "DSL_CACHE_DIR": os.path.join(tmp, "cache"),
                   "PYTHONPATH": ROOT, "MPLBACKEND": "Agg"}
            run = [sys.executable, "-m", "dsl", "run", path, "--out", os.path.join(tmp, "out")]
            for kind, command in (("cold", run), ("cached", run),
                                  ("baseline", [sys.executable, "-c", BASELINE])):
                t, cpu = time.perf_counter(), _children_cpu()
                with _unpinned():
                    subprocess.run(command, cwd=tmp, env=env, check=True, capture_output=True)
                times[kind].append(time.perf_counter() - t)
                times[kind + "_cpu"].append(_children_cpu() - cpu)
    return {"problem": name, **{f"{k}_s": min(v) for k, v in times.items()}}


@contextlib.contextmanager
def _unpinned():
    """A `dsl run` gets the CPUs a user's would, not the one the benchmark is pinned to: it
    draws its plots in a second process (dsl.views.painter.Painter). The benchmark unpins itself
    while it starts one (a preexec_fn is not safe with torch's threads about)."""
    cpus = os.environ.get("DSL_BENCH_CPUS")
    if not cpus:
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fit_targets(res, add) -> None:
    f = res["fit"]
    add("NIST fit, dsl lm / scipy least_squares with the exact Jacobian (median)",
        f["median_ratio_to_exact"], "<=", 2.0, "in process, from NIST's start 1",
        f["median_cpu_ratio_to_exact"])
    worst = max(f["rows"], key=lambda r: r["ratio_to_exact"])["problem"]
    worst_cpu = max(f["rows"], key=lambda r: r["cpu_ratio_to_exact"])["problem"]
    add("NIST fit, dsl lm / scipy least_squares with the exact Jacobian (worst)",
        f["max_ratio_to_exact"], "<=", 2.0, f"{worst}; on CPU time {worst_cpu}" + (
            " (scipy's lm stops at 0 correct digits there, dsl's lm reaches the certified values)"
            if "BoxBOD" in (worst, worst_cpu) else ""), f["max_cpu_ratio_to_exact"])
    slowest = max(f["cli"], key=lambda c: c["cached_s"])
    add("python -m dsl run of a NIST model, cached compile (s, slowest)", slowest["cached_s"],
        "<", 1.0, f"{', '.join(CLI_PROBLEMS)}; the baseline process beside it "
        f"{slowest['baseline_s']:.3f} s", slowest["cached_cpu_s"])
    add("python -m dsl run of a NIST model, cold compile (s, slowest)",
        max(c["cold_s"] for c in f["cli"]), "<", 1.0, ", ".join(CLI_PROBLEMS),
        max(c["cold_cpu_s"] for c in f["cli"]))


def fit_markdown(res) -> list[str]:
    f = res["fit"]
    L = ["### NIST StRD fits from start 1 (in process, the fastest of the repeats)\n",
         "| problem | level | params | rows | dsl lm | digits | scipy exact J | digits "
         "| scipy finite differences | digits | dsl / exact | on CPU time |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in f["rows"]:
        L.append(f"| {r['problem']} | {r['level']} | {r['params']} | {r['observations']} "
                 f"| {r['dsl_ms']:.2f} ms | {r['dsl_digits']:.1f} | {r['scipy_exact_ms']:.2f} ms "
                 f"| {r['scipy_exact_digits']:.1f} | {r['scipy_fd_ms']:.2f} ms "
                 f"| {r['scipy_fd_digits']:.1f} | {r['ratio_to_exact']:.2f} "
                 f"| {r['cpu_ratio_to_exact']:.2f} |")
    L.append("")
    n = len(f["rows"])
    L.append(f"At 6 digits or more: dsl {f['dsl_six_digits']} of {n}, scipy with the exact "
             f"Jacobian {f.get('exact_six_digits', '?')} of {n}, with finite differences "
             f"{f['fd_six_digits']} of {n}.\n")
    L.append("`python -m dsl run` of a NIST model, a fresh process, wall time including the "
             f"compile, the fastest of the repeats; baseline: `python -c \"{BASELINE}\"` "
             "beside it:\n")
    L.append("| model | cold compile (empty cache) | CPU | cached | CPU | baseline | CPU |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in f["cli"]:
        L.append(f"| {c['problem']} | {c['cold_s']:.3f} s | {c['cold_cpu_s']:.3f} s "
                 f"| {c['cached_s']:.3f} s | {c['cached_cpu_s']:.3f} s "
                 f"| {c.get('baseline_s', math.nan):.3f} s "
                 f"| {c.get('baseline_cpu_s', math.nan):.3f} s |")
    L.append("")
    return L
