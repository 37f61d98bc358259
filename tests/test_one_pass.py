"""One pass (issue 14 item 2): each command parses and checks its model once, the CLI session
sharing the checked model with `compile_file`, and `run` draws the initial params once."""
import sys
from pathlib import Path

import pytest

import dsl
import dsl.front.build
import dsl.front.check
import dsl.training.runtime
from dsl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def spy(monkeypatch, module, name: str) -> list:
    """Count the calls of `module.name` wherever the project's modules imported it."""
    real, calls = getattr(module, name), []

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith(("dsl", "compiler")) \
                and getattr(mod, name, None) is real:
            monkeypatch.setattr(mod, name, counted)
    return calls


@pytest.fixture
def counts(monkeypatch):
    monkeypatch.chdir(ROOT)
    return {"parse": spy(monkeypatch, dsl.front.build, "parse"),
            "check": spy(monkeypatch, dsl.front.check, "check"),
            "init_params": spy(monkeypatch, dsl.training.runtime, "init_params")}


@pytest.mark.parametrize("argv", [
    ["check", "examples/boston_rm.model"],
    ["compile", "examples/boston_rm.model", "-o", "{tmp}/m.py"],
    ["eval", "examples/seed_graph.model", "--set", "x=3", "--set", "y=0.5"],
    ["derive", "examples/seed_graph.model"],
    ["graph", "examples/seed_graph.model"],
    ["run", "examples/boston_rm.model", "--steps", "3", "--out", "{tmp}/run"],
    ["run", "examples/boston_rm.model", "--steps", "3", "--out", "{tmp}/run", "--no-cache"],
], ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_each_command_parses_and_checks_once(argv, counts, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 0, capsys.readouterr().err
    assert (len(counts["parse"]), len(counts["check"])) == (1, 1), argv
    if argv[0] == "run":
        assert len(counts["init_params"]) == 1
        params = str(tmp_path / "run" / "params.npz")
        assert main(["predict", "examples/boston_rm.model", "--params", params,
                     "--data", "examples/data/boston.csv"]) == 0
        assert (len(counts["parse"]), len(counts["check"])) == (2, 2)


def test_model_fit_draws_the_params_once_and_each_fit_starts_from_the_draw(counts):
    m = dsl.load("examples/boston_rm.model")
    m.fit(steps=5)
    first = {k: v.copy() for k, v in m.params.items()}
    assert len(counts["init_params"]) == 1  # the draw of `load`, which fit starts from
    m.fit(steps=5)  # trained params are not a start: drawn again, with the same result
    assert len(counts["init_params"]) == 2
    assert all((first[k] == v).all() for k, v in m.params.items())
    m.fit(steps=5, seed=1)  # another seed: another draw
    assert len(counts["init_params"]) == 3
