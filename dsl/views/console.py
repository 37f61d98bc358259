"""What the CLI prints on the console: the progress bar of a run, the report after it (figures,
fitted params with error bars, correlations, a global fit's sources) and `eval`'s values."""
from __future__ import annotations

import time

import numpy as np


class ProgressBar:
    """A bar redrawn in place on a terminal; a few plain lines otherwise. A reader that goes
    away (`dsl run m.model | head`) stops the bar, not the training."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.perf_counter()
        self.last_plain = -1

    def update(self, step: int, total: int, loss: float) -> None:
        rate = step / max(time.perf_counter() - self.start, 1e-9)
        frac = step / total if total else 1.0
        if self.tty:
            filled = int(30 * frac)
            self._write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] step {step}/{total}  "
                        f"loss {loss:.6g}  {rate:,.0f} steps/s ")
        elif int(frac * 10) > self.last_plain:
            self.last_plain = int(frac * 10)
            self._write(f"  step {step}/{total}  loss {loss:.6g}  {rate:,.0f} steps/s\n")

    def close(self) -> None:
        if self.tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.stream = None


def print_report(r: dict) -> None:
    """The figures of report.json as aligned rows, then a global fit's sources and the params."""
    rows = [("train loss", r["train_loss"]), ("test loss", r["test_loss"])]
    for key, label in (("rmse", f"RMSE ({r.get('evaluated_on')})"), ("r2", f"R² ({r.get('evaluated_on')})"),
                       ("accuracy", f"accuracy ({r.get('evaluated_on')})"),
                       ("log_loss", f"log-loss ({r.get('evaluated_on')})")):
        if key in r:
            rows.append((label, r[key]))
    fit = r["fit"]
    evaluations = ", ".join(f"{v} {k}" for k, v in fit["evaluations"].items() if v)
    rows += [("converged", f"{'yes' if fit['converged'] else 'no'} ({fit['reason']})"),
             ("iterations", f"{fit['iterations']} ({evaluations or 'no evaluations'})"),
             ("gradient norm", fit["gradient_norm"]),
             ("steps", r["steps"]), ("time", f"{r['seconds']:.2f} s"),
             ("per step", f"{r['us_per_step']:.1f} us"),
             ("compile", f"{r['compile_seconds']:.3f} s" + (" (cached)" if r["compile_cached"] else ""))]
    rows += [("stable rewrite", rewrite) for rewrite in r["stable_rewrites"]]
    for name, value in r.get("baselines", {}).items():
        rows.append((f"baseline {name} ({r['baseline_metric']})", value))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        text = "-" if v is None else (_fmt_figure(v) if isinstance(v, float) else str(v))
        if k.startswith("R²") and v is None:
            text = "undefined: the target is constant"
        print(f"  {k:<{width}}  {text}")
    print()
    if "sources" in r:
        _print_global_fit(r)
    if r.get("params"):
        _print_params(r)


def _print_global_fit(r: dict) -> None:
    """A global fit: one line per source (its rows, its fit, its own params), then the params
    every source shares."""
    sources = r["sources"]
    own = list(sources[0]["params"])
    head = ["source", "rows", "train loss"] + (["RMSE"] if "rmse" in sources[0] else []) + own
    table = [[s["name"], str(s["train_rows"]), _fmt_figure(s["train_loss"])]
             + ([_fmt_figure(s["rmse"])] if "rmse" in s else [])
             + [_fmt_value(s["params"][n]) for n in own] for s in sources]
    widths = [max(len(x) for x in col) for col in zip(head, *table)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for row in table:
        print("  " + "  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip())
    if r["shared_params"]:
        print("  shared: " + ", ".join(f"{n} = {_fmt_value(v)}" for n, v in r["shared_params"].items()))
    print()


def _print_params(r: dict) -> None:
    """The fitted params with their error bars, the rule behind them, the reported scalars, and
    the correlations (the whole matrix for up to 6 params, else the strongest entries)."""
    u, params = r["uncertainty"], r["params"]
    if u["why_not"]:
        print(f"fitted params (no error bars: {u['why_not']})")
    else:
        print(f"fitted params, ± one standard error, 95% interval ({u['interval']})")
        print(f"  error bars: {u['rule']}")
    _print_values(params)
    if r.get("reports"):
        print("reported, by the delta method: σ² = ∇fᵀ·Σ·∇f, with f's exact gradient and Σ the "
              "params' covariance")
        _print_values(r["reports"])
    corr = r.get("correlation")
    if corr and len(corr) > 1:
        names = list(corr)
        if len(names) <= 6:
            print("correlation")
            w = max(max(len(n) for n in names), 6)
            print("  " + " " * w + "".join(f"  {n:>{w}}" for n in names))
            for a in names:
                print(f"  {a:<{w}}" + "".join(f"  {corr[a][b]:>{w}.3f}" for b in names))
        else:
            pairs = sorted(((a, b, corr[a][b]) for i, a in enumerate(names) for b in names[:i]),
                           key=lambda t: -abs(t[2]))[:10]
            print("strongest correlations")
            for a, b, v in pairs:
                print(f"  {a} ~ {b}  {v:.3f}")
    print()


def _print_values(items: dict) -> None:
    """`name = value ± stderr [95% interval]`, in columns; the value alone without a stderr."""
    width = max(len(k) for k in items)
    values = {name: f"{p['value']:.6g}" for name, p in items.items()}
    errors = {name: f"{p['stderr']:.3g}" for name, p in items.items() if p["stderr"] is not None}
    vw = max(len(v) for v in values.values())
    ew = max((len(e) for e in errors.values()), default=0)
    for name, p in items.items():
        line = f"  {name:<{width}}  = {values[name]}"
        if name in errors:
            lo, hi = p["ci95"]
            line = f"{line:<{width + vw + 6}} ± {errors[name]:<{ew}}   [{lo:.6g}, {hi:.6g}]"
        print(line)


def _fmt_figure(v: float) -> str:
    """Four decimals, or four significant digits for a figure that is huge or tiny."""
    return f"{v:.4g}" if v != 0 and not 1e-3 <= abs(v) < 1e6 else f"{v:.4f}"


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "[" + ", ".join(_fmt_value(x) for x in v) + "]"


def fmt_array(v, indent: int) -> str:
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    text = np.array2string(a, precision=6, threshold=20, edgeitems=2, separator=", ")
    return f"{list(a.shape)} " + text.replace("\n", "\n" + " " * (indent + len(str(list(a.shape))) + 1))


def print_eval(result, file: str) -> None:
    """`dsl eval`: every value, then the objective's gradients."""
    width = max(len(n) for n in result.values)
    print("values:")
    for name, v in result.values.items():
        print(f"  {name:<{width}} = {fmt_array(v, width + 5)}")
    if result.objective:
        print(f"gradients of {result.objective}:")
        labels = {n: f"∂{result.objective}/∂{n}" for n in result.gradients}
        w = max(len(x) for x in labels.values())
        for name, g in result.gradients.items():
            print(f"  {labels[name]:<{w}} = {fmt_array(g, w + 5)}")
    else:
        print(f"(no `minimize` in {file}: no gradients)")
