"""The cost of the checkpoints `dsl run` writes at its logging points (LANGUAGE.md 10.1).

Trains each model the same number of steps with and without the checkpoint callback, alternating,
in one process, and prints the best time of each and their ratio. `dsl.training.train.Saver` keeps the
ratio at most about 1.1 whatever the model; on models whose steps are slow against a save it is
near 1.

    python bench/checkpoints.py [MODEL STEPS ...]   # default: boston_rm 20000 boston_mlp 20000
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dsl  # noqa: E402
from dsl.training.config import with_overrides  # noqa: E402
from dsl.training.checkpoint import save_params  # noqa: E402
from dsl.training.runtime import init_params  # noqa: E402
from dsl.training.train import choose_optimizer, fit  # noqa: E402

REPEATS = 3


def measure(name: str, steps: int, folder: str) -> str:
    m = dsl.load(os.path.join("examples", f"{name}.model"))
    ds = m.dataset()
    cfg = with_overrides(choose_optimizer(m.checked.train, m.module, m.params), steps=steps)
    path = os.path.join(folder, f"{name}.npz")
    saves = []

    def save(params, checkpoint):
        saves.append(1)
        save_params(path, params, ds.transforms, checkpoint)

    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(REPEATS):
        for kind in best:
            params = init_params(m.checked, cfg.seed, cfg.dtype)
            start = time.perf_counter()
            fit(m.module, params, ds.train, ds.test, cfg, None,
                save=save if kind == "with" else None)
            best[kind] = min(best[kind], time.perf_counter() - start)
    return (f"{name}, {steps} steps of {cfg.optimizer}: {best['without']:.3f} s without, "
            f"{best['with']:.3f} s with {len(saves) // REPEATS} checkpoints of "
            f"{os.path.getsize(path)} bytes: ratio {best['with'] / best['without']:.3f}")


def main(argv: list[str]) -> int:
    pairs = list(zip(argv[::2], map(int, argv[1::2]))) or [("boston_rm", 20000),
                                                            ("boston_mlp", 20000)]
    with tempfile.TemporaryDirectory() as folder:
        for name, steps in pairs:
            print(measure(name, steps, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
