#!/usr/bin/env python
"""The benchmark (issue 7): `dsl`'s generated code and compiler against hand-written references.

    python bench/run.py            # the full run, about 5 minutes: bench/results.json, results.md, PNGs
    python bench/run.py --quick    # about a minute: the same sections, smaller; into bench/quick/
    python bench/run.py --quick --without torch,jax    # the smoke check, as without them

Sections (select with --only):
  seed     the tutorial's Boston network, 13 -> 10 sigmoid -> 1, SGD lr 0.01, batch 16: the real
           generated `sgd_step` in a plain loop against hand numpy, PyTorch eager (f64, f32) and
           JAX jit (f64), same initial weights, same minibatch stream; us/step and final test MSE
  mnist    MNIST-5k, 784 -> 128 relu -> 10, softmax cross-entropy, SGD lr 0.1, batch 64: the same
  compile  compile time of every example and of synthetic chains and MLPs of 10 to 10,000 nodes,
           each cold compile the first of a fresh process; stages, sympy's share, time in gc,
           cached compiles, the growth exponent
  grad     the seed network's full-batch gradient on 1e3 to 1e6 rows: ns per row against numpy
  memory   peak memory (tracemalloc) of the seed network's generated `loss` and `grad` against
           hand numpy's, on 4,000 and 1,000,000 rows (issue 14: within 1.05 x)
  data     reading a CSV of 800,000 rows x 20 columns (about 190 MB) into a float array: dsl's
           streaming reader against numpy.loadtxt and pandas.read_csv (the bench extra), each in
           a fresh process: rows/s and peak memory (only with --only data: not in the default run)
  fit      the 27 NIST StRD problems fitted by lm in process, against scipy's least_squares
           with the exact Jacobian and with finite differences; `dsl run` of a NIST model (bench/fit.py)

torch and jax are optional: absent (or left out with --without torch,jax), their columns are
skipped with a note. BLAS, PyTorch and XLA get one thread and the process one CPU (--no-pin);
glibc's malloc thresholds are fixed (--malloc-default). Exit status 1 only if an
implementation's final loss or gradient disagrees with hand numpy (a correctness failure); speed
targets that are missed are reported, not failed. docs/BENCHMARKS.md explains the figures.
"""
import ctypes
import os
import sys

# One thread everywhere, set before numpy (or torch, or jax) is first imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _option(name: str) -> str | None:
    """`--name value` or `--name=value`, read before the imports it affects."""
    argv = sys.argv[1:]
    for k, a in enumerate(argv):
        if a == name and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _pin_cpu() -> int | None:
    """Run the whole benchmark on one core: whatever threads a library starts (XLA starts
    several, whatever its flags say) share that core, so every implementation gets the same one
    core. --no-pin leaves the scheduler free."""
    if "--no-pin" in sys.argv or not hasattr(os, "sched_setaffinity"):
        return None
    os.environ["DSL_BENCH_CPUS"] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


CPU = _pin_cpu()
if _option("--sympy-cache-size"):
    os.environ["SYMPY_CACHE_SIZE"] = _option("--sympy-cache-size")  # read once, when sympy loads


def _pin_malloc() -> str:
    """glibc's malloc gives memory back to the kernel when the top of the heap has more than
    M_TRIM_THRESHOLD free (and its dynamic thresholds move with what was freed last): a loop that
    frees a few hundred KiB of temporaries each step can then page-fault them back every step, and
    whether it does depends on the heap's history (importing torch and jax changes it). Fixed
    thresholds make every implementation run in the same steady state; --malloc-default keeps
    glibc's behaviour (see docs/BENCHMARKS.md)."""
    if "--malloc-default" in sys.argv or not sys.platform.startswith("linux"):
        return "glibc defaults"
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "default (no glibc)"
    ok = libc.mallopt(-3, 64 << 20) == 1 and libc.mallopt(-1, 256 << 20) == 1  # MMAP, TRIM thresholds
    return "pinned: M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 256 MiB" if ok else "default (mallopt failed)"


MALLOC = _pin_malloc()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from contextlib import contextmanager  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


for _mod in filter(None, (_option("--without") or "").split(",")):
    sys.modules[_mod] = None  # `import torch` now raises ImportError, as if not installed

import numpy as np  # noqa: E402
import sympy  # noqa: E402

import fit as fit_section  # noqa: E402
import references as ref  # noqa: E402
import synthetic  # noqa: E402
from dsl.training import runtime  # noqa: E402
from dsl.training.runtime import compile_file  # noqa: E402

plt = None
if "--worker" not in sys.argv:  # a compile worker draws nothing: it starts faster without
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # optional: no plots, said in the report
        plt = None

SEED_MODEL = os.path.join(ROOT, "examples", "boston_mlp.model")
MNIST_EXAMPLE = os.path.join(ROOT, "examples", "mnist_mlp.model")
MNIST_PRESCALED = os.path.join(HERE, "models", "mnist_prescaled.model")

FULL = dict(seed_steps=20000, mnist_steps=2000, repeats=7, warmup=0.05,
            sizes=[10, 30, 100, 300, 1000, 3000, 10000], cold_repeats=5, cold_repeats_upto=1000,
            cold_repeats_above=2,
            example_repeats=5, cached_repeats=5, startup_repeats=15, grad_rows=[1000, 10000, 100000, 1000000],
            fit_repeats=15, fit_cli_repeats=5)
QUICK = dict(seed_steps=2000, mnist_steps=200, repeats=5, warmup=0.05,
             sizes=[10, 100, 300, 1000], cold_repeats=1, cold_repeats_upto=0, cold_repeats_above=1,
             example_repeats=3, cached_repeats=3, startup_repeats=7, grad_rows=[1000, 10000, 100000],
             fit_repeats=3, fit_cli_repeats=1)

F64_TOL, F32_TOL = 1e-6, 1e-2  # relative agreement of final losses with hand numpy


def log(msg: str = "") -> None:
    print(msg, flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


# ---- the generated code, in the loop a user would write -------------------------------------

class DslStep:
    """The real generated `sgd_step(params, inputs, lr)` in a plain loop over the index stream:
    the batch slices, one dict of inputs, the call. Nothing else per step."""

    def __init__(self, name, compiled, init, inputs, lr, evaluate, dtype=np.float64):
        self.name, self.compiled, self.lr = name, compiled, lr
        self.step = compiled.module.sgd_step
        have = list(compiled.module.PARAMS)
        if sorted(have) != sorted(init):
            raise SystemExit(f"{compiled.path}: params {have}, the reference has {sorted(init)}")
        for k, v in init.items():
            want = tuple(compiled.checked.shapes[k])
            if v.shape != want:
                raise SystemExit(f"{compiled.path}: `{k}` is {list(want)}, the reference's {v.shape}")
        self.init = {k: v.astype(dtype) for k, v in init.items()}
        (self.a, self.A), (self.b, self.B) = ((k, v.astype(dtype)) for k, v in inputs.items())
        self._evaluate = evaluate

    def reset(self):
        self.p = {k: v.copy() for k, v in self.init.items()}

    def loop(self, idx):
        step, p, lr, a, A, b, B = self.step, self.p, self.lr, self.a, self.A, self.b, self.B
        for i in idx:
            step(p, {a: A[i], b: B[i]}, lr)

    def evaluate(self):
        return self._evaluate(self.compiled.module, self.p)


def race(impls, idx, repeats: int, warmup: int) -> dict[str, list[float]]:
    """us/step of each implementation over the whole index stream, `repeats` times, the
    implementations taking turns (rotated every repeat) so that drift hits all alike."""
    for impl in impls:  # warm-up: jit compilation, first-touch allocations, caches
        impl.reset()
        impl.loop(idx[:warmup])
    times = {impl.name: [] for impl in impls}
    cpu = {impl.name: [] for impl in impls}
    for r in range(repeats):
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:
            impl.reset()
            c = time.process_time()
            t = time.perf_counter()
            impl.loop(idx)
            times[impl.name].append((time.perf_counter() - t) / len(idx) * 1e6)
            cpu[impl.name].append((time.process_time() - c) / len(idx) * 1e6)
    return times, cpu


def summarize(times, cpu, metrics, primary, base="numpy-hand"):
    """Medians of wall-clock time (the figures), with process CPU time beside them: on a shared
    machine CPU time is not inflated by waiting for a core, so the two together show the noise."""
    rows = []
    for name, ts in times.items():
        rows.append({"impl": name, "us_per_step": median(ts), "samples_us": ts,
                     "cpu_us_per_step": median(cpu[name]), "cpu_samples_us": cpu[name],
                     "ratio_to_numpy": median(ts) / median(times[base]),
                     "ratio_to_dsl": median(ts) / median(times[primary]),
                     "cpu_ratio_to_numpy": median(cpu[name]) / median(cpu[base]), **metrics[name]})
    return rows


def agreement(metrics: dict, key: str, names, base="numpy-hand") -> dict[str, dict]:
    """Each implementation's final `key` against hand numpy's, with the tolerance for its dtype."""
    ref_value = metrics[base][key]
    out = {}
    for name in names:
        v = metrics[name][key]
        tol = F32_TOL if "float32" in name else F64_TOL
        rel = abs(v - ref_value) / max(abs(ref_value), 1e-300)
        out[name] = {"rel_diff": rel, "tolerance": tol, "agrees": bool(rel <= tol)}
    return out


# ---- 1. the seed network --------------------------------------------------------------------

def bench_seed(cfg, notes):
    data = ref.boston()
    Xtr, ytr, Xte, yte = data
    init = ref.seed_init()
    idx = ref.seed_batches(len(Xtr), cfg["seed_steps"])
    compiled = compile_file(SEED_MODEL)

    def dsl_eval(module, p):
        p = {k: v.astype(np.float64) for k, v in p.items()}
        return float(np.mean((module.predict(p, {"X": Xte}) - yte) ** 2))

    impls = [ref.SeedNumpy(data, init),
             DslStep("dsl", compiled, init, {"X": Xtr, "y": ytr}, ref.SEED_LR, dsl_eval),
             DslStep("dsl-float32", compiled, init, {"X": Xtr, "y": ytr}, ref.SEED_LR, dsl_eval, np.float32)]
    if ref.torch is not None:
        impls += [ref.SeedTorch(data, init, ref.torch.float64), ref.SeedTorch(data, init, ref.torch.float32)]
    else:
        notes.append("seed: PyTorch is not installed (or left out): its columns are skipped")
    if ref.jax is not None:
        impls.append(ref.SeedJax(data, init))
    else:
        notes.append("seed: JAX is not installed (or left out): its column is skipped")
    log(f"seed network: {len(impls)} implementations x {cfg['repeats']} repeats x {len(idx)} steps")
    times, cpu = race(impls, idx, cfg["repeats"], max(1, int(cfg["warmup"] * len(idx))))
    metrics = {impl.name: {"test_mse": impl.evaluate()} for impl in impls}
    rows = summarize(times, cpu, metrics, "dsl")
    agree = agreement(metrics, "test_mse", [i.name for i in impls])
    for row in rows:
        row.update(agree[row["impl"]])
        log(f"  {row['impl']:18s} {row['us_per_step']:9.1f} us/step  x{row['ratio_to_numpy']:.2f} numpy"
            f"  test_mse={row['test_mse']:.6f}  {'ok' if row['agrees'] else 'DISAGREES'}")
    return {"model": os.path.relpath(SEED_MODEL, ROOT), "steps": len(idx), "batch": ref.SEED_BATCH,
            "lr": ref.SEED_LR, "repeats": cfg["repeats"], "rows": rows}


# ---- 2. MNIST-5k ----------------------------------------------------------------------------

def bench_mnist(cfg, notes):
    data = ref.mnist()
    X, y, Y, Xraw = data
    init = ref.mnist_init()
    idx = ref.mnist_batches(len(X), cfg["mnist_steps"])

    def dsl_eval_with(Xin):
        def evaluate(module, p):
            p = {k: v.astype(np.float64) for k, v in p.items()}
            return ref.mnist_metrics(np.asarray(module.predict(p, {"X": Xin})), y)
        return evaluate

    prescaled = compile_file(MNIST_PRESCALED)
    impls = [ref.MnistNumpy(data, init),
             DslStep("dsl", prescaled, init, {"X": X, "Y": Y}, ref.MNIST_LR, dsl_eval_with(X)),
             DslStep("dsl-float32", prescaled, init, {"X": X, "Y": Y}, ref.MNIST_LR, dsl_eval_with(X), np.float32)]
    if os.path.exists(MNIST_EXAMPLE):
        impls.append(DslStep("dsl-example-rawpx", compile_file(MNIST_EXAMPLE), init,
                             {"X": Xraw, "Y": Y}, ref.MNIST_LR, dsl_eval_with(Xraw)))
    if ref.torch is not None:
        impls += [ref.MnistTorch(data, init, ref.torch.float64), ref.MnistTorch(data, init, ref.torch.float32)]
    else:
        notes.append("mnist: PyTorch is not installed (or left out): its columns are skipped")
    if ref.jax is not None:
        impls.append(ref.MnistJax(data, init))
    else:
        notes.append("mnist: JAX is not installed (or left out): its column is skipped")
    log(f"MNIST-5k: {len(impls)} implementations x {cfg['repeats']} repeats x {len(idx)} steps")
    times, cpu = race(impls, idx, cfg["repeats"], max(1, int(cfg["warmup"] * len(idx))))
    metrics = {}
    for impl in impls:
        loss, acc = impl.evaluate()
        metrics[impl.name] = {"train_loss": loss, "train_accuracy": acc}
    rows = summarize(times, cpu, metrics, "dsl")
    agree = agreement(metrics, "train_loss", [i.name for i in impls])
    for row in rows:
        row.update(agree[row["impl"]])
        log(f"  {row['impl']:18s} {row['us_per_step']:9.1f} us/step  x{row['ratio_to_numpy']:.2f} numpy"
            f"  loss={row['train_loss']:.6f} acc={row['train_accuracy']:.4f}"
            f"  {'ok' if row['agrees'] else 'DISAGREES'}")
    return {"model": os.path.relpath(MNIST_PRESCALED, ROOT),
            "example": os.path.relpath(MNIST_EXAMPLE, ROOT) if os.path.exists(MNIST_EXAMPLE) else None,
            "steps": len(idx), "batch": ref.MNIST_BATCH, "lr": ref.MNIST_LR,
            "repeats": cfg["repeats"], "rows": rows}


# ---- 3. compile time ------------------------------------------------------------------------

STAGES = ("parse", "check", "lower", "generate", "load_module")


@contextmanager
def stage_clock():
    """Time the stages of a real `compile_file` call by wrapping the functions it calls (parse,
    check and load_module in `dsl.training.runtime`; `compiler.lower.lower` and `compiler.codegen.generate`,
    which it imports on a cache miss) for the duration."""
    import compiler.codegen
    import compiler.lower
    owners = {"parse": runtime, "check": runtime, "lower": compiler.lower, "generate": compiler.codegen,
              "load_module": runtime}
    spent = {s: 0.0 for s in STAGES}
    saved = {}
    for s in STAGES:
        f = getattr(owners[s], s)
        saved[s] = f

        def timed(*a, _f=f, _s=s, **k):
            t = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                spent[_s] += time.perf_counter() - t
        setattr(owners[s], s, timed)
    try:
        yield spent
    finally:
        for s, f in saved.items():
            setattr(owners[s], s, f)


@contextmanager
def gc_clock():
    """Time spent in Python's cyclic garbage collector, and its collections per generation."""
    out = {"gc_s": 0.0, "collections": [0, 0, 0]}
    began = [0.0]

    def callback(phase, info):
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            out["gc_s"] += time.perf_counter() - began[0]
            out["collections"][info["generation"]] += 1
    gc.callbacks.append(callback)
    try:
        yield out
    finally:
        gc.callbacks.remove(callback)


class StackSampler:
    """Which library the main thread is in, sampled every millisecond: the share of samples
    with a sympy frame anywhere on the stack is sympy's share of the time (its calls back into
    our printer rules and fdiffs included). Python's own `compile` of the generated module
    holds the GIL, so that stage is under-sampled; the stage times cover it."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.counts = {"sympy": 0, "lark": 0, "other": 0}

    def __enter__(self):
        self.target = threading.get_ident()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _run(self):
        while not self.stop.wait(self.interval):
            f = sys._current_frames().get(self.target)
            kind = "other"
            while f is not None:
                name = f.f_code.co_filename
                if "sympy" in name:
                    kind = "sympy"
                    break
                if "lark" in name and kind == "other":
                    kind = "lark"
                f = f.f_back
            self.counts[kind] += 1

    def share(self, kind: str) -> float | None:
        n = sum(self.counts.values())
        return self.counts[kind] / n if n else None


def worker(path: str, mode: str) -> dict:
    """`run.py --worker PATH nocache|cache`: one `compile_file` as the first compile of a fresh
    process (no torch, no jax), the way `dsl run` meets it. Fresh, because the compiler keeps
    memo tables (and sympy its caches) for the life of the process: a second compile of the
    same model in one process is not cold. The compiler's modules are imported first, as the
    baseline's `dsl.runtime` did at import: compile times compare the same work (the imports
    are measured apart, by `import_cost`): `COMPILER`, with `compiler.second_order`, which
    `generate` imports on its first call (it builds on code generation's writer)."""
    for name in COMPILER.split(", "):
        importlib.import_module(name)
    cpu = time.process_time()
    with stage_clock() as spent, gc_clock() as gcs, StackSampler() as sampler:
        c = compile_file(path, use_cache=mode == "cache")
    out = {"compile_s": c.compile_seconds, "cpu_s": time.process_time() - cpu, "cached": c.cached,
           "stages_s": spent, "sympy_share": sampler.share("sympy"), **gcs}
    if not c.cached:
        out.update(nodes=len(c.graph.nodes), generated_lines=c.source.count("\n"))
    return out


def fresh_process(path: str, mode: str, root: str = ROOT) -> dict:
    """One compile worker of the tree at `root`: this one, or the baseline's (its own run.py)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.join(root, "bench", "run.py"), "--worker", path, mode,
                          "--without", "torch,jax", *(["--no-pin"] if CPU is None else [])],
                         capture_output=True, text=True, cwd=root, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the compile worker failed on {path}:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    return res


@contextmanager
def cache_folder(folder: str):
    """Point dsl's compile cache (`$DSL_CACHE_DIR`, read at each compile; the workers inherit
    it) at `folder` for the duration."""
    saved = os.environ.get("DSL_CACHE_DIR")
    os.environ["DSL_CACHE_DIR"] = folder
    try:
        yield folder
    finally:
        if saved is None:
            del os.environ["DSL_CACHE_DIR"]
        else:
            os.environ["DSL_CACHE_DIR"] = saved


def cold_and_cached(path: str, cold_repeats: int, cached_repeats: int, base: str) -> dict:
    """A first compile in a fresh process that writes the cache, `cold_repeats` cold compiles in
    fresh processes without the cache, a cached compile in a fresh process, by this tree's
    compiler and by the baseline's (tree `base`), taking turns; then cached compiles repeated in
    this process (this compiler). Each compiler has a cache folder of its own, empty at the
    start. The first compile is kept apart (`first_s`), not among the cold ones: into an empty
    folder this tree also writes the parser's tables, which every later process of an install
    reads (as it reads its bytecode), so it is a first use rather than a model's cold compile."""
    folder = os.path.dirname(path)
    roots = {"new": ROOT, "old": base}
    cold: dict[str, list] = {"new": [], "old": []}
    for r in range(cold_repeats + 1):
        for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
            with cache_folder(os.path.join(folder, f"__cache_{which}__")):
                cold[which].append(fresh_process(path, "cache" if r == 0 else "nocache", roots[which]))
    out = {}
    for which in ("new", "old"):
        assert not cold[which][0]["cached"], f"the first compile of {path} ({which}) found a cache"
        first_s = cold[which].pop(0)["compile_s"]
        with cache_folder(os.path.join(folder, f"__cache_{which}__")):
            cached = fresh_process(path, "cache", roots[which])
            assert cached["cached"], f"the cached compile of {path} ({which}) did not find the cache"
            warm = []
            for _ in range(cached_repeats if which == "new" else 0):
                c = compile_file(path)
                assert c.cached, f"the cached compile of {path} did not find the cache"
                warm.append(c.compile_seconds)
        cs = cold[which]
        out[which] = {
            "cold_s": median([c["compile_s"] for c in cs]), "cold_cpu_s": median([c["cpu_s"] for c in cs]),
            "cold_samples_s": [c["compile_s"] for c in cs],
            "cold_process_s": median([c["process_s"] for c in cs]),
            "stages_s": {st: median([c["stages_s"][st] for c in cs]) for st in STAGES},
            "sympy_share": median([c["sympy_share"] for c in cs if c["sympy_share"] is not None]),
            "gc_s": median([c["gc_s"] for c in cs]), "gc_collections": cs[0]["collections"],
            "cached_fresh_s": cached["compile_s"], "cached_process_s": cached["process_s"],
            "cached_s": median(warm), "first_s": first_s}
    first = cold["new"][0]
    assert first["nodes"] == cold["old"][0]["nodes"], f"{path}: the two compilers' graphs differ"
    return {"nodes": first["nodes"], "generated_lines": first["generated_lines"],
            "cold_repeats": cold_repeats, **out,
            "ratio_cold": out["new"]["cold_s"] / out["old"]["cold_s"],
            "ratio_cold_cpu": out["new"]["cold_cpu_s"] / out["old"]["cold_cpu_s"]}


def bench_examples(cfg, tmp, base):
    rows = []
    examples = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".model"))
    for name in examples:
        # a copy beside empty cache folders: the examples' own files are left alone
        folder = os.path.join(tmp, "examples", os.path.splitext(name)[0])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        shutil.copy(os.path.join(ROOT, "examples", name), path)
        try:
            row = {"model": f"examples/{name}",
                   **cold_and_cached(path, cfg["example_repeats"], cfg["cached_repeats"], base)}
        except (AssertionError, SystemExit) as e:  # a model the baseline cannot compile (a newer feature)
            log(f"  {name}: skipped ({str(e).splitlines()[0][:120]})")
            continue
        rows.append(row)
        new, old = row["new"], row["old"]
        log(f"  {row['model']:34s} {row['nodes']:3d} nodes  cold {new['cold_s'] * 1e3:5.0f} ms against "
            f"{old['cold_s'] * 1e3:5.0f} ms (x{row['ratio_cold']:.2f}); cached {new['cached_fresh_s'] * 1e3:5.1f} "
            f"against {old['cached_fresh_s'] * 1e3:5.1f} ms in a fresh process")
    return rows


_IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
COMPILER = "compiler.codegen, compiler.lower, compiler.second_order"  # what a cold compile imports
BASELINE = "9715622"  # the compiler before issue 15: sympy at import, Lark built per process
ZEROS = "[[0,0,0,0,0,0,0,0,0,0,0,0,0]]"


@contextmanager
def baseline_tree(commit: str = BASELINE):
    """The baseline commit's tree in a temporary folder (`git archive`), whose own bench/run.py
    is its compile worker."""
    tmp = tempfile.mkdtemp(prefix="dsl-bench-baseline-")
    try:
        tar = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def bytecode_cache(folder: str):
    """Subprocesses write and read compiled bytecode in `folder`, as an installed package has
    its .pyc files: with PYTHONDONTWRITEBYTECODE set (as on some machines) every process would
    compile dsl's sources again, and the baseline (site-packages) would not."""
    saved = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = folder
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _timed(cmd: list[str], cwd: str) -> tuple[float, float]:
    """Wall and CPU time (user + system) of one process."""
    before = os.times()
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def import_cost(repeats: int, base: str) -> dict:
    """What a fresh process pays before its first compile: `import dsl.training.runtime` (this tree and
    the baseline's, which imported sympy with it), that and the compiler a cold compile imports
    (sympy with it: what the baseline's import held, which the compile workers import before
    their clocks start), `import sympy`, `import numpy`."""
    out = {}
    for name, module, root in (("dsl", "dsl.training.runtime", ROOT), ("dsl_baseline", "dsl.runtime", base),
                               ("compiler", f"dsl.training.runtime, {COMPILER}", ROOT),
                               ("sympy", "sympy", ROOT), ("numpy", "numpy", ROOT),
                               ("numpy_lark", "numpy, lark", ROOT)):
        times = []
        for _ in range(repeats + 1):  # the first writes the bytecode cache
            proc = subprocess.run([sys.executable, "-c", _IMPORT.format(module)], capture_output=True,
                                  text=True, cwd=root, check=True)
            times.append(float(proc.stdout.strip().splitlines()[-1]))
        out[f"import_{name}_s"] = median(times[1:])
    log(f"  a fresh process: import dsl.training.runtime {out['import_dsl_s'] * 1e3:.0f} ms (baseline "
        f"{out['import_dsl_baseline_s'] * 1e3:.0f} ms), with the compiler {out['import_compiler_s'] * 1e3:.0f} ms; sympy {out['import_sympy_s'] * 1e3:.0f} ms, "
        f"numpy {out['import_numpy_s'] * 1e3:.0f} ms, numpy and lark {out['import_numpy_lark_s'] * 1e3:.0f} ms")
    return out


def eval_startup(repeats: int, base: str, tmp: str) -> dict:
    """`python -m dsl eval examples/boston_mlp.model --set ...` with a warm cache, as a whole
    process, against `python -c "import numpy, lark"` (and the baseline's eval), taking turns:
    medians of wall and CPU time, and their ratios."""
    args = ["-m", "dsl", "eval", "examples/boston_mlp.model", "--set", f"X={ZEROS}", "--set", "y=[[1]]"]
    cmds = {"dsl_eval": ([sys.executable, *args], ROOT),
            "import_numpy_lark": ([sys.executable, "-c", "import numpy, lark"], ROOT),
            "dsl_eval_baseline": ([sys.executable, *args], base)}
    wall = {k: [] for k in cmds}
    cpu = {k: [] for k in cmds}
    with cache_folder(os.path.join(tmp, "eval-cache")):
        for cmd, cwd in cmds.values():  # warm: the module and the parser's tables cached, bytecode written
            _timed(cmd, cwd)
        for r in range(repeats):
            order = list(cmds) if r % 2 == 0 else list(cmds)[::-1]
            for k in order:
                w, c = _timed(*cmds[k])
                wall[k].append(w)
                cpu[k].append(c)
    out = {"command": "python " + " ".join(args), "repeats": repeats,
           **{f"{k}_s": median(v) for k, v in wall.items()}, **{f"{k}_cpu_s": median(v) for k, v in cpu.items()},
           "samples_s": wall}
    out["ratio"] = out["dsl_eval_s"] / out["import_numpy_lark_s"]
    out["ratio_cpu"] = out["dsl_eval_cpu_s"] / out["import_numpy_lark_cpu_s"]
    out["ratio_baseline"] = out["dsl_eval_baseline_s"] / out["import_numpy_lark_s"]
    log(f"  warm-cache `dsl eval` process {out['dsl_eval_s'] * 1e3:.0f} ms against `import numpy, lark` "
        f"{out['import_numpy_lark_s'] * 1e3:.0f} ms: x{out['ratio']:.2f} (CPU time x{out['ratio_cpu']:.2f}); "
        f"the baseline's eval x{out['ratio_baseline']:.2f}")
    return out


def bench_synthetic(cfg, tmp, base):
    rows = []
    for kind in ("chain", "mlp"):
        for target in cfg["sizes"]:
            folder = os.path.join(tmp, f"{kind}{target}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{kind}{target}.model")
            with open(path, "w", encoding="utf-8") as f:
                f.write(synthetic.sized(kind, target))
            repeats = cfg["cold_repeats" if target <= cfg["cold_repeats_upto"] else "cold_repeats_above"]
            row = {"kind": kind, **cold_and_cached(path, repeats, cfg["cached_repeats"], base)}
            n = row["nodes"]
            for which in ("new", "old"):
                r = row[which]
                st = r["stages_s"]
                r.update(us_per_node_cold=r["cold_s"] / n * 1e6, cpu_us_per_node_cold=r["cold_cpu_s"] / n * 1e6,
                         front_s=st["parse"] + st["check"], lower_generate_s=st["lower"] + st["generate"])
            rows.append(row)
            new, old = row["new"], row["old"]
            log(f"  {kind:5s} {n:6d} nodes  cold {new['cold_s']:8.3f} s ({new['us_per_node_cold']:5.0f} us/node) "
                f"against {old['cold_s']:8.3f} s ({old['us_per_node_cold']:5.0f} us/node): x{row['ratio_cold']:.3f}"
                f" (CPU x{row['ratio_cold_cpu']:.3f}); sympy {100 * (new['sympy_share'] or 0):3.0f}% of the new")
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def growth(rows, kind, key="cold_cpu_s", min_nodes=290):
    """Least-squares slope of log(cold compile time) on log(nodes), over sizes of at least
    `min_nodes`: 1 is linear growth. CPU time by default: wall time on a shared machine carries
    the other processes' load, which differs from one size to the next."""
    pts = [(math.log(r["nodes"]), math.log(r[key])) for r in rows
           if r["kind"] == kind and r["nodes"] >= min_nodes]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def bench_compile(cfg):
    tmp = tempfile.mkdtemp(prefix="dsl-bench-")
    try:
        with baseline_tree() as base, bytecode_cache(os.path.join(tmp, "pycache")):
            log(f"compile time: this tree against the baseline compiler (git {BASELINE}), side by side")
            imports = import_cost(cfg["example_repeats"], base)
            startup = eval_startup(cfg["startup_repeats"], base, tmp)
            log("every example (each cold compile in a fresh process)")
            examples = bench_examples(cfg, tmp, base)
            log(f"synthetic chains and MLPs of {cfg['sizes'][0]} to {cfg['sizes'][-1]} nodes")
            synth = bench_synthetic(cfg, tmp, base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"baseline": BASELINE, "imports": imports, "startup": startup, "examples": examples,
           "synthetic": synth}
    res.update(growth_all(synth))
    log("  growth exponent (log-log slope of cold CPU time over >= 290 nodes): "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["growth_exponent"].items() if v is not None)
        + "; the baseline's: "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["growth_exponent_baseline"].items() if v is not None))
    return res


def growth_all(synth) -> dict:
    pick = {w: [{"kind": r["kind"], "nodes": r["nodes"], **r[w]} for r in synth] for w in ("new", "old")}
    return {"growth_exponent": {k: growth(pick["new"], k) for k in ("chain", "mlp")},
            "growth_exponent_wall": {k: growth(pick["new"], k, "cold_s") for k in ("chain", "mlp")},
            "growth_exponent_baseline": {k: growth(pick["old"], k) for k in ("chain", "mlp")}}


# ---- 4. full-batch gradient on growing data -------------------------------------------------

def bench_grad(cfg):
    compiled = compile_file(SEED_MODEL)
    grad = compiled.module.grad
    p = ref.seed_init()
    rng = np.random.default_rng(2)
    rows = []
    for n in cfg["grad_rows"]:
        X = rng.standard_normal((n, 13))
        y = 22.5 + 9.2 * rng.standard_normal((n, 1))
        g_dsl, g_np = grad(p, {"X": X, "y": y}), ref.seed_grad_numpy(p, X, y)
        err = max(float(np.max(np.abs(g_dsl[k] - g_np[k]) / (np.max(np.abs(g_np[k])) + 1e-300)))
                  for k in g_np)
        fns = {"dsl": lambda: grad(p, {"X": X, "y": y}), "numpy-hand": lambda: ref.seed_grad_numpy(p, X, y)}
        times = {k: [] for k in fns}
        repeats = max(5, cfg["repeats"]) if n <= 100000 else 5
        for r in range(repeats):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t)
        row = {"rows": n, "dsl_s": median(times["dsl"]), "numpy_s": median(times["numpy-hand"]),
               "dsl_ns_per_row": median(times["dsl"]) / n * 1e9,
               "numpy_ns_per_row": median(times["numpy-hand"]) / n * 1e9,
               "ratio": median(times["dsl"]) / median(times["numpy-hand"]),
               "max_rel_diff": err, "agrees": bool(err <= 1e-9), "repeats": repeats}
        rows.append(row)
        log(f"  {n:8d} rows  dsl {row['dsl_ns_per_row']:7.1f} ns/row  numpy {row['numpy_ns_per_row']:7.1f}"
            f" ns/row  x{row['ratio']:.2f}  grads agree to {err:.1e}")
        del X, y
    return {"model": os.path.relpath(SEED_MODEL, ROOT), "function": "grad", "rows": rows}


# ---- 5. peak memory of loss and grad ---------------------------------------------------------

MEMORY_ROWS = {"full": [4000, 1_000_000], "quick": [4000, 100_000]}


def peak_bytes(f, *args) -> int:
    """The most memory `f(*args)` held at once beyond what existed before the call
    (tracemalloc, which numpy reports its array buffers to), after one warm-up call."""
    f(*args)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        f(*args)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def bench_memory(mode: str) -> dict:
    """The generated `loss` and `grad` of the seed network against hand-written numpy
    (bench/references.py), on the same arrays: peak bytes and their ratio."""
    module = compile_file(SEED_MODEL).module
    p = ref.seed_init()
    rng = np.random.default_rng(3)
    rows = []
    for n in MEMORY_ROWS[mode]:
        X = rng.standard_normal((n, 13))
        y = 22.5 + 9.2 * rng.standard_normal((n, 1))
        inputs = {"X": X, "y": y}
        for fn, dsl_f, hand_f in (("loss", module.loss, ref.seed_loss_numpy),
                                  ("grad", module.grad, ref.seed_grad_numpy)):
            dsl_b, hand_b = peak_bytes(dsl_f, p, inputs), peak_bytes(hand_f, p, X, y)
            rows.append({"rows": n, "function": fn, "dsl_mib": dsl_b / 2**20,
                         "numpy_mib": hand_b / 2**20, "ratio": dsl_b / hand_b})
            log(f"  {fn:4s} {n:9,d} rows  dsl {dsl_b / 2**20:8.2f} MiB  hand numpy "
                f"{hand_b / 2**20:8.2f} MiB  x{dsl_b / hand_b:.3f}")
        del X, y, inputs
    return {"model": os.path.relpath(SEED_MODEL, ROOT), "rows": rows}


# ---- reading CSVs ---------------------------------------------------------------------------

CSV_SHAPE = {"full": (800_000, 20), "quick": (50_000, 20)}
CSV_REPEATS = {"full": 3, "quick": 1}
CSV_READERS = ("dsl", "numpy", "pandas")


def _proc_status(key: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def csv_worker(path: str, reader: str) -> dict:
    """`run.py --worker PATH csv-READER`: one read of the CSV into a float64 array in a fresh
    process; the peak is the resident memory above what the process held before reading (the
    kernel's high-water mark, reset just before)."""
    if reader == "pandas":
        import pandas as pd

        def read():
            return pd.read_csv(path, dtype=np.float64).to_numpy()
    elif reader == "numpy":
        def read():
            return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    else:
        from dsl.training.data import read_csv

        def read():
            return read_csv(path).values
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = _proc_status("VmRSS")
    t, cpu = time.perf_counter(), time.process_time()
    values = read()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "peak_bytes": _proc_status("VmHWM") - before,
            "array_bytes": values.nbytes, "shape": list(values.shape),
            "checksum": float(np.sum(values, dtype=np.float64))}


def bench_data(mode: str, tmp: str, notes: list) -> dict:
    rows, cols = CSV_SHAPE[mode]
    path = os.path.join(tmp, "bench.csv")
    rng = np.random.default_rng(5)
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(f"c{j}" for j in range(cols)) + "\n")
        for start in range(0, rows, 50_000):
            np.savetxt(f, rng.standard_normal((min(50_000, rows - start), cols)), delimiter=",",
                       fmt="%.8g")
    size = os.path.getsize(path)
    log(f"reading a CSV: {rows:,} rows x {cols} columns, {size / 1e6:.0f} MB")
    readers = list(CSV_READERS)
    try:
        import pandas  # noqa: F401
    except ImportError:
        readers.remove("pandas")
        notes.append("pandas is not installed (pip install 'dsl[bench]'): no pandas.read_csv row")
    runs = {r: [] for r in readers}
    for i in range(CSV_REPEATS[mode]):
        for r in (readers if i % 2 == 0 else readers[::-1]):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", path,
                                  f"csv-{r}", "--without", "torch,jax", "--no-pin"],
                                 capture_output=True, text=True, cwd=ROOT, check=False)
            if out.returncode != 0:
                raise SystemExit(f"the CSV worker failed for {r}:\n{out.stderr}")
            runs[r].append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = []
    base = median([x["seconds"] for x in runs["dsl"]])
    for r in readers:
        sec = median([x["seconds"] for x in runs[r]])
        peak = median([x["peak_bytes"] for x in runs[r]])
        first = runs[r][0]
        row = {"reader": {"dsl": "dsl.training.data.read_csv", "numpy": "numpy.loadtxt",
                          "pandas": "pandas.read_csv"}[r],
               "seconds": sec, "cpu_s": median([x["cpu_s"] for x in runs[r]]),
               "rows_per_s": rows / sec, "mb_per_s": size / 1e6 / sec, "x_dsl_time": sec / base,
               "peak_mib": peak / 2**20, "peak_over_array": peak / first["array_bytes"],
               "agrees": first["shape"] == [rows, cols] and math.isclose(
                   first["checksum"], runs["dsl"][0]["checksum"], rel_tol=1e-12, abs_tol=1e-6)}
        table.append(row)
        log(f"  {row['reader']:<18} {sec:6.2f} s  {row['rows_per_s']:>10,.0f} rows/s  "
            f"peak {row['peak_mib']:6.0f} MiB ({row['peak_over_array']:.2f} x the array)")
    os.unlink(path)
    return {"rows": rows, "columns": cols, "file_mb": size / 1e6,
            "array_mib": rows * cols * 8 / 2**20, "repeats": CSV_REPEATS[mode], "readers": table}


# ---- targets, machine, report ---------------------------------------------------------------

def _row(section, impl):
    for r in section["rows"]:
        if r["impl"] == impl:
            return r
    return None


def _holds(value, op, bound):
    if value is None:
        return None
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]


def targets(res) -> list[dict]:
    """Each target with its measured value on wall-clock medians and, for the step ratios, on
    CPU-time medians too (the same runs): the two agree on a quiet machine."""
    out = []

    def add(what, value, op, bound, note="", cpu=None):
        out.append({"target": what, "value": value, "op": op, "bound": bound,
                    "holds": _holds(value, op, bound), "cpu_value": cpu,
                    "cpu_holds": _holds(cpu, op, bound), "note": note})

    def ratio(section, a, b, key="us_per_step"):
        ra, rb = _row(section, a), _row(section, b)
        return None if ra is None or rb is None else ra[key] / rb[key]

    def add_ratio(what, section, a, b, op, bound, note=""):
        add(what, ratio(section, a, b), op, bound, note, ratio(section, a, b, "cpu_us_per_step"))

    if "seed" in res:
        s = res["seed"]
        add_ratio("seed step / hand numpy", s, "dsl", "numpy-hand", "<=", 1.10)
        add_ratio("PyTorch eager f64 step / seed step", s, "torch-eager-float64", "dsl", ">=", 6.0)
        add_ratio("PyTorch eager f32 step / seed step", s, "torch-eager-float32", "dsl", ">=", 6.0)
        add_ratio("PyTorch eager f32 step / seed step in float32", s, "torch-eager-float32", "dsl-float32", ">=", 6.0)
        add_ratio("seed step / JAX jit step", s, "dsl", "jax-jit-f64", "<", 1.0)
    if "mnist" in res:
        m = res["mnist"]
        add_ratio("MNIST step / hand numpy (same arithmetic)", m, "dsl", "numpy-hand", "<=", 1.10)
        add_ratio("MNIST step / hand numpy (examples/mnist_mlp.model, raw pixels)", m,
                  "dsl-example-rawpx", "numpy-hand", "<=", 1.10,
                  "the model scales the pixels inside every step; the references scale them once")
        add_ratio("MNIST step / PyTorch eager f64 step", m, "dsl", "torch-eager-float64", "<", 1.0)
        add_ratio("MNIST step / PyTorch eager f32 step", m, "dsl", "torch-eager-float32", "<", 1.0,
                  "float64 against float32")
        add_ratio("MNIST step in float32 / PyTorch eager f32 step", m, "dsl-float32", "torch-eager-float32", "<", 1.0)
    if "compile" in res:
        c = res["compile"]
        boston = [r for r in c["examples"] if r["model"].endswith("boston_mlp.model")]
        add("boston_mlp.model cold compile, fresh process (s)",
            boston[0]["new"]["cold_s"] if boston else None, "<", 0.5,
            "compile_seconds of the first compile in a fresh process, without the cache")
        for kind, slope in c["growth_exponent"].items():
            add(f"compile-time growth exponent, {kind}", slope, "<=", 1.10,
                "log-log slope of cold compile CPU time on node count, over >= 290 nodes; 1 is linear")
        for r in c["synthetic"]:
            if r["nodes"] >= 900:  # the sizes of issue 15: 1,000 and 10,000 nodes
                add(f"cold compile per node / baseline's, {r['kind']} of {r['nodes']} nodes",
                    r["ratio_cold"], "<=", 0.1, f"git {c['baseline']}, side by side", r["ratio_cold_cpu"])
                add(f"cold compile per node (us), {r['kind']} of {r['nodes']} nodes",
                    r["new"]["us_per_node_cold"], "<=", 300, "", r["new"]["cpu_us_per_node_cold"])
        st = c["startup"]
        add("warm-cache `dsl eval boston_mlp` process / `python -c \"import numpy, lark\"`", st["ratio"], "<=", 1.5,
            "whole processes, side by side", st["ratio_cpu"])
    if "memory" in res:
        for r in res["memory"]["rows"]:
            add(f"peak memory of {r['function']} / hand numpy, {r['rows']:,} rows", r["ratio"],
                "<=", 1.05, "tracemalloc, the seed network")
    if "fit" in res:
        fit_section.fit_targets(res, add)
    return out


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "numpy": np.__version__, "sympy": sympy.__version__,
            "torch": ref.TORCH, "jax": ref.JAX,
            "threads": "1 (OMP/OPENBLAS/MKL_NUM_THREADS=1, torch.set_num_threads(1), XLA_FLAGS one thread)",
            "malloc": MALLOC, "pinned_cpu": CPU,
            "sympy_cache_size": os.environ.get("SYMPY_CACHE_SIZE", "1000 (default)"),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
        import lark
        info["lark"] = lark.__version__
    except ImportError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                               "Hypervisor vendor", "L2 cache", "L3 cache"):
                info[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (AttributeError, KeyError, TypeError):
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, check=True).stdout.strip()
        info["git"] = rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{digits}f}"


def markdown(res) -> str:
    L = []
    m = res["machine"]
    L.append(f"Command: `{res['command']}` ({res['mode']} run, {m['date']}, git {m.get('git', '?')})\n")
    L.append(f"Machine: {m.get('Model name', '?')}, {m['cpus']} CPUs ({m.get('Hypervisor vendor', 'bare metal')} "
             f"guest), Python {m['python']}, numpy {m['numpy']} ({m.get('blas', '?')}), sympy {m['sympy']}, "
             f"torch {m['torch'] or 'absent'}, jax {m['jax'] or 'absent'}; every library on one thread"
             f"{'' if m.get('pinned_cpu') is None else ', the process pinned to CPU ' + str(m['pinned_cpu'])}; malloc "
             f"{m['malloc']}; load average {m['loadavg_start'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} "
             f"at the end.\n")
    for name, title, metric in (("seed", "Seed network (Boston 13 -> 10 sigmoid -> 1, batch 16)", "test_mse"),
                                ("mnist", "MNIST-5k (784 -> 128 relu -> 10, batch 64)", "train_loss")):
        if name not in res:
            continue
        s = res[name]
        L.append(f"### {title}: {s['steps']} steps, median of {s['repeats']} repeats\n")
        extra = "| train accuracy " if name == "mnist" else ""
        L.append(f"| implementation | us/step | x hand numpy | x dsl | CPU us/step | CPU x numpy "
                 f"| final {metric.replace('_', ' ')} {extra}| agrees with numpy |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if name == "mnist" else "") + " --- |")
        for r in s["rows"]:
            acc = f"| {r['train_accuracy']:.4f} " if name == "mnist" else ""
            L.append(f"| {r['impl']} | {r['us_per_step']:.1f} | {r['ratio_to_numpy']:.2f} | {r['ratio_to_dsl']:.2f} "
                     f"| {r['cpu_us_per_step']:.1f} | {r['cpu_ratio_to_numpy']:.2f} "
                     f"| {r[metric]:.6f} {acc}| {'yes' if r['agrees'] else 'NO'} ({r['rel_diff']:.0e}) |")
        L.append("")
    if "compile" in res:
        c = res["compile"]
        st = c["startup"]
        im = c["imports"]
        L.append(f"### Starting a command (this tree against the baseline, git {c['baseline']}, side by side)\n")
        L.append(f"`{st['command']}` with a warm cache, as a whole process, median of {st['repeats']}: "
                 f"**{st['dsl_eval_s'] * 1e3:.0f} ms**, against `python -c \"import numpy, lark\"` "
                 f"{st['import_numpy_lark_s'] * 1e3:.0f} ms: **x{st['ratio']:.2f}** (CPU time x{st['ratio_cpu']:.2f}); "
                 f"the baseline's eval {st['dsl_eval_baseline_s'] * 1e3:.0f} ms, x{st['ratio_baseline']:.2f}.\n")
        L.append(f"`import dsl.training.runtime` in a fresh process: {im['import_dsl_s'] * 1e3:.0f} ms, the baseline's "
                 f"{im['import_dsl_baseline_s'] * 1e3:.0f} ms (it imported sympy, {im['import_sympy_s'] * 1e3:.0f} ms "
                 f"alone, and its whole compiler); with what a cold compile imports (`{COMPILER}`, "
                 f"sympy with them), {im['import_compiler_s'] * 1e3:.0f} ms; numpy {im['import_numpy_s'] * 1e3:.0f} ms, numpy and lark "
                 f"{im['import_numpy_lark_s'] * 1e3:.0f} ms. Medians of fresh interpreters, bytecode cached.\n")
        L.append("### Compile time of every example (cold: a compile in a fresh process without the module "
                 "cache; the median of those after a first compile that writes the caches, `first_s`)\n")
        L.append("| model | nodes | cold | baseline | x baseline | parse+check | lower | generate | load "
                 "| sympy share | cached, fresh process | baseline's |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in c["examples"]:
            new, old = r["new"], r["old"]
            st = new["stages_s"]
            L.append(f"| {r['model']} | {r['nodes']} | {new['cold_s'] * 1e3:.0f} ms | {old['cold_s'] * 1e3:.0f} ms "
                     f"| {r['ratio_cold']:.2f} | {(st['parse'] + st['check']) * 1e3:.1f} ms | {st['lower'] * 1e3:.1f} ms "
                     f"| {st['generate'] * 1e3:.1f} ms | {st['load_module'] * 1e3:.1f} ms "
                     f"| {100 * (new['sympy_share'] or 0):.0f}% | {new['cached_fresh_s'] * 1e3:.1f} ms "
                     f"| {old['cached_fresh_s'] * 1e3:.1f} ms |")
        L.append("")
        L.append("### Compile time of synthetic models (cold: a compile in a fresh process without the module "
                 "cache; the median of those after a first compile that writes the caches, `first_s`)\n")
        L.append("| kind | nodes | cold | us/node | baseline | baseline us/node | x baseline | x on CPU time "
                 "| parse+check | lower | generate | load | sympy share | baseline's sympy share | cached, fresh process |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in c["synthetic"]:
            new, old = r["new"], r["old"]
            st = new["stages_s"]
            L.append(f"| {r['kind']} | {r['nodes']} | {new['cold_s']:.3f} s | {new['us_per_node_cold']:.0f} "
                     f"| {old['cold_s']:.3f} s | {old['us_per_node_cold']:.0f} | **{r['ratio_cold']:.3f}** "
                     f"| {r['ratio_cold_cpu']:.3f} | {new['front_s']:.3f} s | {st['lower']:.3f} s "
                     f"| {st['generate']:.3f} s | {st['load_module']:.3f} s | {100 * (new['sympy_share'] or 0):.0f}% "
                     f"| {100 * (old['sympy_share'] or 0):.0f}% | {new['cached_fresh_s']:.4f} s |")
        L.append("")
        L.append("Growth exponent (log-log slope of cold compile time on nodes, >= 290 nodes): CPU time "
                 + ", ".join(f"{k} {fmt(v)}" for k, v in c["growth_exponent"].items()) + "; wall time "
                 + ", ".join(f"{k} {fmt(v)}" for k, v in c["growth_exponent_wall"].items()) + "; the baseline's "
                 + ", ".join(f"{k} {fmt(v)}" for k, v in c["growth_exponent_baseline"].items()) + "\n")
    if "grad" in res:
        L.append("### Full-batch gradient of the seed network (`grad`), growing data\n")
        L.append("| rows | dsl | hand numpy | dsl ns/row | numpy ns/row | x numpy | grads agree |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in res["grad"]["rows"]:
            L.append(f"| {r['rows']:,} | {r['dsl_s'] * 1e3:.2f} ms | {r['numpy_s'] * 1e3:.2f} ms "
                     f"| {r['dsl_ns_per_row']:.1f} | {r['numpy_ns_per_row']:.1f} | {r['ratio']:.2f} "
                     f"| {'yes' if r['agrees'] else 'NO'} ({r['max_rel_diff']:.0e}) |")
        L.append("")
    if "memory" in res:
        L.append("### Peak memory of the seed network's `loss` and `grad` (tracemalloc)\n")
        L.append("| function | rows | dsl | hand numpy | x numpy |")
        L.append("| --- | ---: | ---: | ---: | ---: |")
        for r in res["memory"]["rows"]:
            L.append(f"| `{r['function']}` | {r['rows']:,} | {r['dsl_mib']:.2f} MiB "
                     f"| {r['numpy_mib']:.2f} MiB | {r['ratio']:.3f} |")
        L.append("")
    if "data" in res:
        d = res["data"]
        L.append(f"### Reading a CSV: {d['rows']:,} rows x {d['columns']} columns, {d['file_mb']:.0f} MB, "
                 f"into a float64 array of {d['array_mib']:.0f} MiB (each a fresh process, median of "
                 f"{d['repeats']})\n")
        L.append("| reader | time | x dsl | rows/s | MB/s | peak memory | peak / array | same numbers |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in d["readers"]:
            L.append(f"| {r['reader']} | {r['seconds']:.2f} s | {r['x_dsl_time']:.2f} | {r['rows_per_s']:,.0f} "
                     f"| {r['mb_per_s']:.1f} | {r['peak_mib']:.0f} MiB | {r['peak_over_array']:.2f} "
                     f"| {'yes' if r['agrees'] else 'NO'} |")
        L.append("")
    if "fit" in res:
        L += fit_section.fit_markdown(res)
    L.append("### Targets\n")
    L.append("| target | measured (wall) | bound | holds | on CPU time | holds |")
    L.append("| --- | ---: | ---: | --- | ---: | --- |")

    def yes(h):
        return "-" if h is None else ("yes" if h else "**no**")
    for t in res["targets"]:
        L.append(f"| {t['target']} | {fmt(t['value'], 3)} | {t['op']} {t['bound']} | {yes(t['holds'])} "
                 f"| {fmt(t['cpu_value'], 3)} | {yes(t['cpu_holds'])} |")
    L.append("")
    if res["notes"]:
        L.append("Notes: " + "; ".join(res["notes"]) + ".\n")
    return "\n".join(L)


def plots(res, out) -> list[str]:
    if plt is None:
        res["notes"].append("matplotlib is not installed: no plots")
        return []
    made = []
    if "compile" in res:
        synth = res["compile"]["synthetic"]
        fig, ax = plt.subplots(figsize=(7, 4.8))
        for kind, color in (("chain", "tab:blue"), ("mlp", "tab:orange")):
            rows = [r for r in synth if r["kind"] == kind]
            if not rows:
                continue
            n = [r["nodes"] for r in rows]
            ax.loglog(n, [r["new"]["cold_cpu_s"] for r in rows], "o-", color=color, label=f"{kind}: cold (CPU time)")
            ax.loglog(n, [r["old"]["cold_cpu_s"] for r in rows], "s--", color=color, alpha=0.6,
                      label=f"{kind}: cold, baseline git {res['compile']['baseline']}")
            ax.loglog(n, [r["new"]["cached_fresh_s"] for r in rows], "^:", color=color, alpha=0.7,
                      label=f"{kind}: cached, fresh process")
        xs = [min(r["nodes"] for r in synth), max(r["nodes"] for r in synth)]
        ax.loglog(xs, [300e-6 * x for x in xs], color="grey", lw=0.8, label="0.3 ms per node")
        ex = res["compile"]["examples"]
        if ex:
            ax.loglog([r["nodes"] for r in ex], [r["new"]["cold_cpu_s"] for r in ex], "k*", ms=8,
                      label="examples/*.model (cold, CPU time)")
        ax.set_xlabel("graph nodes")
        ax.set_ylabel("compile time (s)")
        ax.set_title("dsl compile time: parse, check, lower, derive, generate, load")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        path = os.path.join(out, "compile_time.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    if "grad" in res:
        rows = res["grad"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        n = [r["rows"] for r in rows]
        ax.semilogx(n, [r["dsl_ns_per_row"] for r in rows], "o-", label="dsl generated grad")
        ax.semilogx(n, [r["numpy_ns_per_row"] for r in rows], "s--", label="hand numpy")
        ax.set_xlabel("rows")
        ax.set_ylabel("ns per row")
        ax.set_ylim(bottom=0)
        ax.set_title("seed network, full-batch gradient")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out, "grad_rows.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


# ---- profiles (--profile): evidence for a missed target -------------------------------------

def profile_steps(out, steps_seed=20000, steps_mnist=1000):
    """cProfile of hand numpy's loop and the dsl loop, seed and MNIST, top functions by own time."""
    texts = []
    data = ref.boston()
    init = ref.seed_init()
    idx = ref.seed_batches(len(data[0]), steps_seed)
    seed = [ref.SeedNumpy(data, init),
            DslStep("dsl", compile_file(SEED_MODEL), init, {"X": data[0], "y": data[1]}, ref.SEED_LR, None)]
    mdata = ref.mnist()
    minit = ref.mnist_init()
    midx = ref.mnist_batches(len(mdata[0]), steps_mnist)
    mnist = [ref.MnistNumpy(mdata, minit),
             DslStep("dsl", compile_file(MNIST_PRESCALED), minit, {"X": mdata[0], "Y": mdata[2]}, ref.MNIST_LR, None)]
    for title, impls, ix in (("seed", seed, idx), ("mnist", mnist, midx)):
        for impl in impls:
            impl.reset()
            pr = cProfile.Profile()
            pr.enable()
            impl.loop(ix)
            pr.disable()
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(14)
            texts.append(f"==== {title}: {impl.name}, {len(ix)} steps\n{buf.getvalue()}")
    path = os.path.join(out, "profile_steps.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts))
    return path


def profile_worker(path: str) -> str:
    """`run.py --worker PATH profile`: cProfile of a cold compile, by cumulative and own time."""
    pr = cProfile.Profile()
    pr.enable()
    compile_file(path, use_cache=False)
    pr.disable()
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf)
    st.sort_stats("cumulative").print_stats(45)
    st.sort_stats("tottime").print_stats(15)
    return buf.getvalue()


def profile_compile(out, nodes=3000):
    """cProfile of a cold compile (fresh process) of a chain and an MLP of about `nodes` nodes."""
    texts = []
    tmp = tempfile.mkdtemp(prefix="dsl-bench-prof-")
    try:
        for kind in ("chain", "mlp"):
            path = os.path.join(tmp, f"{kind}.model")
            with open(path, "w", encoding="utf-8") as f:
                f.write(synthetic.sized(kind, nodes))
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", path, "profile",
                                   "--without", "torch,jax"], capture_output=True, text=True, cwd=ROOT, check=True)
            texts.append(f"==== cold compile of a {kind} of about {nodes} nodes\n{proc.stdout}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = os.path.join(out, "profile_compile.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts))
    return path


# ---- main -----------------------------------------------------------------------------------

def _keep_earlier_sections(res: dict, out: str, sections: list[str]) -> None:
    """A run of some sections (`--only compile`) keeps the other sections' figures from the
    results.json it replaces, saying so in the notes."""
    try:
        with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return
    kept = [s for s in ("seed", "mnist", "compile", "grad", "memory", "data", "fit")
            if s not in sections and s in earlier]
    for s in kept:
        res[s] = earlier[s]
    if kept:
        res["notes"].append(f"{', '.join(kept)}: from an earlier run (`{earlier.get('command')}`, "
                            f"{earlier.get('machine', {}).get('date')}, git {earlier.get('machine', {}).get('git')})")


def report(out: str) -> int:
    """Recompute the derived figures (growth exponents, targets) and rewrite the report and the
    plots from a results.json: for a change in the report's form, without measuring again."""
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        res = json.load(f)
    if "compile" in res:
        res["compile"].update(growth_all(res["compile"]["synthetic"]))
    res["targets"] = targets(res)
    plots(res, out)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(res))
    log(f"rewrote {os.path.relpath(os.path.join(out, 'results.md'), ROOT)} and the plots from results.json")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="the same sections, small: about a minute")
    ap.add_argument("--only", default="seed,mnist,compile,grad,memory",
                    help="sections, comma-separated")
    ap.add_argument("--without", default="", help="leave out optional libraries, e.g. torch,jax")
    ap.add_argument("--out", help="folder for results (default bench/, or bench/quick/ with --quick)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    ap.add_argument("--sympy-cache-size", help="SYMPY_CACHE_SIZE for this run (sympy's default is 1000)")
    ap.add_argument("--malloc-default", action="store_true",
                    help="keep glibc's malloc thresholds (by default they are pinned: see _pin_malloc)")
    ap.add_argument("--profile", action="store_true", help="also write cProfile reports of the steps and of compiling")
    ap.add_argument("--report-only", action="store_true",
                    help="no measuring: rewrite results.md, the targets and the plots from OUT/results.json")
    ap.add_argument("--worker", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        path, mode = args.worker
        if mode.startswith("csv-"):
            print(json.dumps(csv_worker(path, mode[len("csv-"):])))
        else:
            print(profile_worker(path) if mode == "profile" else json.dumps(worker(path, mode)))
        return 0
    cfg = QUICK if args.quick else FULL
    out = args.out or (os.path.join(HERE, "quick") if args.quick else HERE)
    os.makedirs(out, exist_ok=True)
    if args.report_only:
        return report(out)
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - {"seed", "mnist", "compile", "grad", "memory", "data", "fit"}
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    res = {"command": command, "mode": "quick" if args.quick else "full", "config": cfg,
           "machine": machine(), "notes": []}
    # compiled modules go to a cache of the run's own, not the user's (see cache_folder)
    run_cache = tempfile.mkdtemp(prefix="dsl-bench-cache-")
    os.environ["DSL_CACHE_DIR"] = run_cache
    started = time.perf_counter()
    res["machine"]["loadavg_start"] = os.getloadavg()
    log(f"dsl benchmark ({res['mode']}): numpy {np.__version__}, torch {ref.TORCH or 'absent'}, "
        f"jax {ref.JAX or 'absent'}; one thread")
    if "seed" in sections:
        res["seed"] = bench_seed(cfg, res["notes"])
    if "mnist" in sections:
        res["mnist"] = bench_mnist(cfg, res["notes"])
    if "compile" in sections:
        res["compile"] = bench_compile(cfg)
    if "grad" in sections:
        log("full-batch gradient of the seed network")
        res["grad"] = bench_grad(cfg)
    if "memory" in sections:
        log("peak memory of loss and grad, the seed network")
        res["memory"] = bench_memory(res["mode"])
    if "data" in sections:
        res["data"] = bench_data(res["mode"], run_cache, res["notes"])
    if "fit" in sections:
        res["fit"] = fit_section.bench_fit(cfg, log)
    _keep_earlier_sections(res, out, sections)
    res["targets"] = targets(res)
    if args.profile:
        log("profiles: " + ", ".join(os.path.relpath(p, ROOT) for p in (profile_steps(out), profile_compile(out))))
    res["seconds"] = time.perf_counter() - started
    shutil.rmtree(run_cache, ignore_errors=True)
    res["machine"]["loadavg_end"] = os.getloadavg()
    made = plots(res, out)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(res))
    log("\ntargets:")
    for t in res["targets"]:
        state = "n/a" if t["holds"] is None else ("holds" if t["holds"] else "MISSED")
        cpu = "" if t["cpu_value"] is None else f"   (CPU time: {fmt(t['cpu_value'], 3)}, " \
            f"{'holds' if t['cpu_holds'] else 'MISSED'})"
        log(f"  {t['target']:62s} {fmt(t['value'], 3):>8s} {t['op']} {t['bound']:<5}  {state}{cpu}")
    for note in res["notes"]:
        log(f"note: {note}")
    written = [os.path.join(out, "results.json"), os.path.join(out, "results.md"), *made]
    log(f"\nwrote {', '.join(os.path.relpath(p, ROOT) for p in written)} in {res['seconds']:.0f} s")
    bad = [f"{sec}: {r['impl']}" for sec in ("seed", "mnist") if sec in res
           for r in res[sec]["rows"] if not r["agrees"]]
    bad += [f"grad: {r['rows']} rows" for r in res.get("grad", {}).get("rows", []) if not r["agrees"]]
    if bad:
        log("CORRECTNESS: final losses or gradients disagree with hand numpy: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
