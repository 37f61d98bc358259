"""The compile cache is trusted only when it is the user's own and matches its digest (issue 12
item 7, issue 13 item 11): a planted module never runs, a damaged one is compiled over."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import dsl.training.runtime
from compiler.errors import DslError
from dsl.training.runtime import compile_file
from tests.test_fuzz import invoke

MODEL = "input x\nparam w = 1\nloss = w * x\nminimize loss\n"


@pytest.fixture
def model(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DSL_CACHE_DIR", str(cache))
    path = tmp_path / "m.model"
    path.write_text(MODEL)
    return path


def entry(model: Path) -> Path:
    return Path(dsl.training.runtime._cache_path(str(model), model.read_text()))


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plant(model: Path, marker: Path, with_digest: bool) -> Path:
    """A module under the cache entry's computable name that creates `marker` when run."""
    cache = entry(model)
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(f"open({str(marker)!r}, 'w')\n")
    if with_digest:
        Path(str(cache) + ".sha256").write_text(digest_of(cache))
    return cache


def test_a_second_compile_takes_the_verified_cached_module(model):
    first = compile_file(str(model))
    assert not first.cached and not first.warnings
    cache = entry(model)
    assert Path(str(cache) + ".sha256").read_text() == digest_of(cache)
    assert cache.stat().st_mode & 0o077 == 0 and cache.parent.stat().st_mode & 0o077 == 0
    second = compile_file(str(model))
    assert second.cached and second.source == first.source and not second.warnings


@pytest.mark.parametrize("damage", ["truncated", "garbage", "digest only"])
def test_a_damaged_entry_is_compiled_again_and_written_over(model, damage):
    assert invoke(["eval", str(model), "--set", "x=2"]).status == 0
    cache = entry(model)
    good = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(good[:len(good) // 2])
    elif damage == "garbage":
        cache.write_bytes(b"\x00\xff def (((\n")
    else:
        Path(str(cache) + ".sha256").write_text("0" * 64)
    outcome = invoke(["eval", str(model), "--set", "x=2"])
    assert outcome.status == 0, outcome.err
    assert "loss = 2" in outcome.out
    assert "SyntaxError" not in outcome.err and "internal error" not in outcome.err
    assert "is damaged" in outcome.err and "compiled again" in outcome.err
    assert cache.read_bytes() == good
    assert Path(str(cache) + ".sha256").read_text() == digest_of(cache)
    again = invoke(["eval", str(model), "--set", "x=2"])  # healed: no warning any more
    assert again.status == 0 and again.err == ""


def test_a_module_planted_without_its_digest_does_not_run(model, tmp_path):
    marker = tmp_path / "PWNED"
    plant(model, marker, with_digest=False)
    outcome = invoke(["eval", str(model), "--set", "x=2"])
    assert outcome.status == 0, outcome.err
    assert not marker.exists()
    assert Path(str(entry(model)) + ".sha256").read_text() == digest_of(entry(model))


def test_a_cache_folder_others_can_write_is_not_used(model, tmp_path):
    """A shared DSL_CACHE_DIR: anyone could plant a module with its digest, so none is read,
    and nothing is written there either."""
    marker = tmp_path / "PWNED"
    cache = plant(model, marker, with_digest=True)
    os.chmod(cache.parent, 0o777)
    outcome = invoke(["eval", str(model), "--set", "x=2"])
    assert outcome.status == 0, outcome.err
    assert not marker.exists()
    assert f"warning: the compile cache folder {cache.parent} is not used: others can write to it" \
        in outcome.err
    assert "DSL_CACHE_DIR" in outcome.err
    assert cache.read_text().startswith("open(")  # left alone
    run = compile_file(str(model))
    assert not run.cached and run.warnings


@pytest.mark.parametrize("which", ["module", "digest"])
def test_a_cached_file_others_can_write_is_not_trusted(model, tmp_path, which):
    marker = tmp_path / "PWNED"
    cache = plant(model, marker, with_digest=True)
    os.chmod(cache.parent, 0o700)
    os.chmod(cache if which == "module" else Path(str(cache) + ".sha256"), 0o666)
    outcome = invoke(["eval", str(model), "--set", "x=2"])
    assert outcome.status == 0, outcome.err
    assert not marker.exists()
    assert "is not used: others can write to it" in outcome.err
    assert not cache.read_text().startswith("open(")  # compiled over
    assert cache.stat().st_mode & 0o077 == 0
    assert compile_file(str(model)).cached


def test_another_users_cache_folder_is_not_used(model, tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    cache = plant(model, marker, with_digest=True)
    os.chmod(cache.parent, 0o755)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # as if the folder were someone else's
    outcome = invoke(["eval", str(model), "--set", "x=2"])
    assert outcome.status == 0, outcome.err
    assert not marker.exists()
    assert "is not used: it belongs to another user" in outcome.err


def test_the_cyclic_collector_is_paused_while_compiling_and_resumed_after(model, monkeypatch):
    """Issue 15: the collector's passes over a compile's many live objects took 10-30% of a
    cold compile; it is paused for the compile only, and resumed even when the compile fails."""
    import compiler.codegen
    import gc
    seen = []
    generate = compiler.codegen.generate

    def watched(graph):
        seen.append(gc.isenabled())
        return generate(graph)
    monkeypatch.setattr(compiler.codegen, "generate", watched)
    assert gc.isenabled()
    compile_file(str(model), use_cache=False)
    assert seen == [False] and gc.isenabled()
    model.write_text("loss = nope\nminimize loss\n")
    with pytest.raises(DslError):
        compile_file(str(model), use_cache=False)
    assert gc.isenabled()
