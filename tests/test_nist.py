"""The 27 NIST StRD nonlinear-regression problems (tests/data/nist/): `optimizer lm` with its
default settings reaches at least 6 correct significant digits on every param, from both of
NIST's published starts. In process, each model compiled once."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

import dsl
from dsl.training.config import with_overrides
from dsl.training.train import choose_optimizer, fit

NIST = Path(__file__).resolve().parent / "data" / "nist"
CERTIFIED = json.loads((NIST / "certified.json").read_text())
DIGITS = 6


@functools.lru_cache(maxsize=None)
def model(name: str):
    return dsl.load(str(NIST / f"{name}.model"))


def log_relative_error(value: float, certified: float) -> float:
    """Correct significant digits: -log10 of the relative error (11, NIST's precision, if exact)."""
    if value == certified:
        return 11.0
    return min(11.0, -math.log10(abs(value - certified) / abs(certified)))


def fit_from(name: str, start: str):
    m = model(name)
    cfg = choose_optimizer(m.checked.train, m.module, m.params)
    ds = m.dataset()
    params = {k: np.array(v, dtype=float) for k, v in CERTIFIED[name][start].items()}
    result = fit(m.module, params, ds.train, ds.test, cfg)
    return cfg, params, result


def test_there_are_27_problems():
    assert len(CERTIFIED) == 27 == len(list(NIST.glob("*.model")))


@pytest.mark.parametrize("start", ["start1", "start2"])
@pytest.mark.parametrize("name", sorted(CERTIFIED))
def test_lm_reaches_six_digits(name, start):
    cfg, params, result = fit_from(name, start)
    assert cfg.optimizer.name == "lm"  # the default for a least-squares model of this size
    assert cfg.optimizer == with_overrides(cfg, optimizer="lm").optimizer  # default settings
    digits = {k: log_relative_error(float(v), CERTIFIED[name]["certified"][k])
              for k, v in params.items()}
    assert min(digits.values()) >= DIGITS, digits
    assert result.convergence.converged, result.convergence
