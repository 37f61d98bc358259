"""Issue 13: bounded memory on any input, and a clear refusal (exit 1 for a path in a model,
2 for one on the command line) instead of reading without end, hanging, or an internal error."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dsl.cli import main
from dsl.training.checkpoint import load_params

ROOT = Path(__file__).resolve().parents[1]
SEED = "examples/seed_graph.model"
BOSTON = "examples/boston_mlp.model"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out, err


def model_with_data(tmp_path: Path, data: str) -> Path:
    p = tmp_path / "m.model"
    p.write_text(f'data "{data}"\ninput x[N] <- a\ninput y[N] <- b\nparam k = 0\n'
                 "loss = mean((k * x - y)^2)\nminimize loss\n")
    return p


# ---- 1. what is not a regular file --------------------------------------------------------------

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_the_models_data_is_refused(tmp_path, capsys, device):
    rc, _, err = run(["run", model_with_data(tmp_path, device), "--out", tmp_path / "r"], capsys)
    assert rc == 1
    assert f"cannot read data file `{device}`: it is a character device, not a regular file" in err
    assert "m.model:1:1" in err


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_not_waited_on(tmp_path, fifo):
    """In a child process with a timeout: before the fix, opening the FIFO blocked for ever."""
    model = model_with_data(tmp_path, str(fifo))
    for argv in (["run", str(model), "--out", str(tmp_path / "r")], ["data", str(fifo)],
                 ["check", str(fifo)], ["eval", SEED, "--params", str(fifo)]):
        p = subprocess.run([sys.executable, "-m", "dsl", *argv], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == (1 if argv[0] == "run" else 2), (argv, p.stderr)
        assert "it is a FIFO (named pipe), not a regular file" in p.stderr, (argv, p.stderr)


@pytest.mark.parametrize("argv", [
    ["check", "/dev/zero"],
    ["data", "/dev/zero"],
    ["data", "/dev/urandom", "--plot", "x.png"],
    ["eval", SEED, "--params", "/dev/zero"],
    ["eval", SEED, "--set", "x=@/dev/zero"],
    ["predict", BOSTON, "--params", "/dev/zero", "--data", "examples/data/boston.csv"],
    ["predict", BOSTON, "--params", "/dev/null", "--data", "/dev/zero"],
    ["run", "/dev/zero"],
])
def test_a_device_on_the_command_line_is_a_usage_error(argv, capsys):
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "it is a character device, not a regular file" in err, err


# ---- 3. params files: only the members the model needs, checked from their headers -------------

def _write_npz(path: Path, members: dict[str, np.ndarray | tuple]) -> None:
    """Members by name: an array, or (dtype, shape, zeros to stream) for a big member written
    without ever holding it in memory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in members.items():
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                if isinstance(value, np.ndarray):
                    np.lib.format.write_array(f, value)
                    continue
                dtype, shape, nbytes = value
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
                block = bytes(1 << 20)
                for _ in range(nbytes // len(block)):
                    f.write(block)


def _seed_params() -> dict[str, np.ndarray]:
    return {"k1": np.array(0.5), "k2": np.array(-0.25)}


def test_members_the_model_does_not_name_are_never_read(tmp_path, capsys):
    path = tmp_path / "p.npz"
    _write_npz(path, {**_seed_params(), "junk": ("<f8", (1 << 25,), 1 << 28)})  # 256 MiB of zeros
    tracemalloc.start()
    try:
        rc, out, err = run(["eval", SEED, "--params", path, "--set", "x=1", "--set", "y=0",
                            "--json"], capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rc == 0 and '"k1": 0.5' in out
    assert peak < 64 << 20


def test_a_param_of_the_wrong_shape_is_refused_from_its_header(tmp_path, capsys):
    path = tmp_path / "p.npz"
    _write_npz(path, {"k1": ("<f8", (100_000, 100_000), 0), "k2": np.array(0.0)})  # 75 GiB said
    rc, _, err = run(["eval", SEED, "--params", path, "--set", "x=1", "--set", "y=0"], capsys)
    assert rc == 1 and "`k1` should be scalar but the value given has shape [100000, 100000]" in err


@pytest.mark.parametrize("value,kind", [(np.array("hello"), "<U5"), (np.array(1 + 2j), "complex128")])
def test_a_string_or_complex_param_is_a_clear_error(tmp_path, capsys, value, kind):
    path = tmp_path / "p.npz"
    _write_npz(path, {"k1": value, "k2": np.array(0.0)})
    rc, _, err = run(["eval", SEED, "--params", path, "--set", "x=1", "--set", "y=0"], capsys)
    assert rc == 1 and f"`k1` in {path} is an array of {kind}, not of real numbers" in err


def test_a_pickled_param_is_never_unpickled(tmp_path, capsys):
    path = tmp_path / "p.npz"
    _write_npz(path, {"k1": np.array([object()], dtype=object), "k2": np.array(0.0)})
    rc, _, err = run(["eval", SEED, "--params", path, "--set", "x=1", "--set", "y=0"], capsys)
    assert rc == 1 and "is an array of object, not of real numbers" in err


def test_load_params_without_a_model_reads_everything(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, a=np.ones(3), __transform__X__mean=np.zeros(2), __transform__X__std=np.ones(2))
    saved = load_params(str(path))
    assert list(saved.params) == ["a"] and saved.transforms["X"].std.tolist() == [1, 1]



# ---- 5. `run` draws the initial params once -----------------------------------------------------

def test_run_draws_the_initial_params_once(tmp_path, capsys, monkeypatch):
    import dsl.cli
    import dsl.model
    import dsl.training.runtime
    calls = []

    def counting(checked, seed, dtype="float64"):
        calls.append((seed, dtype))
        return dsl.training.runtime.init_params(checked, seed, dtype)
    monkeypatch.setattr(dsl.model, "init_params", counting)
    monkeypatch.setattr(dsl.cli, "init_params", counting, raising=False)  # where it drew again
    rc, out, _ = run(["run", "examples/boston_rm.model", "--steps", "2", "--seed", "3",
                      "--dtype", "float32", "--out", tmp_path / "r"], capsys)
    assert rc == 0 and calls == [(3, "float32")]


# ---- 7. `data --plot` plots at most HEATMAP_MAX columns, and says so -----------------------------

def test_data_plot_caps_its_columns_and_says_so(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import dsl.training.data  # plots imports correlations from there when it draws a heatmap
    seen = []
    real = dsl.training.data.correlations
    monkeypatch.setattr(dsl.training.data, "correlations",
                        lambda t: seen.append(len(t.columns)) or real(t))
    wide = tmp_path / "wide.csv"
    rng = np.random.default_rng(0)
    np.savetxt(wide, rng.standard_normal((5, 2000)), delimiter=",", comments="",
               header=",".join(f"c{i}" for i in range(2000)))
    rc, out, _ = run(["data", wide, "--plot", tmp_path / "corr.png"], capsys)
    assert rc == 0 and seen == [100] and (tmp_path / "corr.png").exists()
    assert (f"wrote {tmp_path / 'corr.png'} (the correlations of the first 100 of 2000 columns: "
            "a heatmap shows at most 100)") in out


# ---- 8. `eval --json` summarizes a large array; --full prints it --------------------------------

def test_eval_json_summarizes_large_arrays(tmp_path, capsys):
    import json
    model = tmp_path / "big.model"
    model.write_text("input x[N]\nparam w[500, 400] = 0.5\ns = sum(w) * sum(x)\nminimize s\n")
    rc, out, _ = run(["eval", model, "--set", "x=[1, 2]", "--json"], capsys)
    assert rc == 0
    r = json.loads(out)
    assert r["values"]["w"] == {"summary": True, "shape": [500, 400], "size": 200000, "min": 0.5,
                                "max": 0.5, "mean": 0.5, "first": [0.5] * 5, "last": [0.5] * 5}
    assert r["gradients"]["w"]["shape"] == [500, 400] and r["gradients"]["w"]["mean"] == 3.0
    assert r["values"]["x"] == [1.0, 2.0] and r["values"]["s"] == 300000.0
    rc, out, _ = run(["eval", model, "--set", "x=[1, 2]", "--json", "--full"], capsys)
    full = json.loads(out)["values"]["w"]
    assert rc == 0 and len(full) == 500 and len(full[0]) == 400


# ---- 4. a node too large for memory is refused before running, with its line -------------------

GRAM = ('data "rows.csv"\ninput X[N, 2] <- a..b\nparam w[2] = 0.1\n'
        "G = X @ transpose(X)\nloss = mean(G) + sum(w^2)\nminimize loss\n")


def _gram(tmp_path: Path, rows: int) -> Path:
    np.savetxt(tmp_path / "rows.csv", np.random.default_rng(0).standard_normal((rows, 2)),
               delimiter=",", header="a,b", comments="", fmt="%.3f")
    (tmp_path / "gram.model").write_text(GRAM)
    return tmp_path / "gram.model"


@pytest.mark.parametrize("command", [["eval"], ["run", "--steps", "1"]])
def test_a_node_too_large_is_refused_with_its_line(tmp_path, capsys, command):
    model = _gram(tmp_path, 200_000)
    rc, _, err = run([command[0], model, *command[1:], "--out", tmp_path / "r"]
                     if command[0] == "run" else [command[0], model], capsys)
    assert rc == 1
    assert (f"{model}:4:5: error: `G` needs an array of [200000, 200000] float64, 298 GiB: more "
            "than the limit of 4 GiB for one array") in err
    assert "--max-node-memory" in err


def test_the_node_limit_is_a_flag(tmp_path, capsys):
    model = _gram(tmp_path, 1000)  # G is 7.63 MiB
    rc, _, err = run(["eval", model, "--max-node-memory", "1M"], capsys)
    assert rc == 1 and "7.63 MiB: more than the limit of 1 MiB for one array" in err
    rc, out, _ = run(["eval", model, "--max-node-memory", "16MiB"], capsys)
    assert rc == 0 and "G" in out
    rc, _, err = run(["eval", model, "--max-node-memory", "lots"], capsys)
    assert rc == 2 and "`lots` is not a size such as 4G or 512M" in err


def test_the_api_refuses_a_node_too_large(tmp_path):
    import dsl
    from compiler.errors import DataError
    m = dsl.load(str(_gram(tmp_path, 1000)))
    m.max_node_bytes = 1 << 20
    with pytest.raises(DataError, match="`G` needs an array of \\[1000, 1000\\] float64"):
        m.eval()
    with pytest.raises(DataError, match="`G` needs"):
        m.fit(steps=1)


# ---- 6. `log every 1` streams the history to history.csv ----------------------------------------

def test_log_every_1_streams_the_history_to_history_csv(tmp_path, capsys, monkeypatch):
    import csv

    import dsl.training.checkpoint
    from dsl.training.train import HISTORY_IN_MEMORY
    model = tmp_path / "m.model"
    model.write_text(f'data "{ROOT}/examples/data/boston.csv"\ninput x[N] <- RM\n'
                     "input y[N] <- MEDV\nparam k = 0\nloss = mean((k * x - y)^2)\nminimize loss\n"
                     "train {\n optimizer gd(lr = 0.001)\n steps 400\n log every 1\n}\n")
    seen = []  # at each write: rows the History holds, rows already in the file
    real = dsl.training.checkpoint.HistoryFile.write

    def spy(self, rows):
        real(self, rows)
        with open(self.path) as f:
            seen.append((len(self.history.step), sum(1 for _ in f) - 1))
    monkeypatch.setattr(dsl.training.checkpoint.HistoryFile, "write", spy)
    out = tmp_path / "out"
    rc, _, err = run(["run", model, "--out", out], capsys)
    assert rc == 0, err
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(401))
    assert max(held for held, _ in seen) <= HISTORY_IN_MEMORY + 1  # the row being handed over
    assert seen[len(seen) // 2][1] >= 150  # half way, the file held what was logged so far


def test_load_history_keeps_a_plots_worth_evenly_and_the_last_row(tmp_path):
    from dsl.training.checkpoint import load_history
    path = tmp_path / "history.csv"
    path.write_text("step,epoch,train_loss,test_loss,seconds\n"
                    + "".join(f"{i},{i},{1 / (i + 1)!r},nan,0.0\n" for i in range(10_001)))
    h = load_history(str(path), most=100)
    assert h.step[0] == 0 and h.step[-1] == 10_000 and len(h.step) <= 201
    gaps = {b - a for a, b in zip(h.step[:-2], h.step[1:-1])}
    assert len(gaps) == 1 and h.test_loss == []
    assert load_history(str(path)).step == list(range(10_001))


# ---- a model file and a header too large are refused before they are read ------------------------

def test_a_model_file_above_the_limit_is_refused_unread(tmp_path, capsys):
    from dsl.front.build import MAX_MODEL_BYTES
    model = tmp_path / "big.model"
    model.write_text("input x\nparam k = 1\n" + "a = k * x\n" * (MAX_MODEL_BYTES // 10))
    rc, _, err = run(["check", model], capsys)
    assert rc == 1 and f"model file {model} is" in err and "more than the limit of 4,194,304" in err


def test_a_header_of_too_many_columns_is_refused(tmp_path, capsys):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(100_001)) + "\n" + "1," * 100_000 + "1\n")
    rc, _, err = run(["data", wide], capsys)
    assert rc == 1 and "has 100,001 columns, more than the limit of 100,000" in err
