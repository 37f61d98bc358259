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
from dsl.report import load_params

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
