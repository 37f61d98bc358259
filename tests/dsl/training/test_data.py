"""dsl.training.data: reading CSVs (and every way they can be bad), columns, splits, standardizing, stats."""
from __future__ import annotations

import gzip
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.errors import DataError, Span
from dsl.front.ast import Columns
from dsl.training.data import (OneHot, Standardizer, Table, correlations, describe, numeric_column,
                      read_csv, select, split_rows)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DATA = os.path.join(ROOT, "examples", "data")
BOSTON = os.path.join(DATA, "boston.csv")
IRIS = os.path.join(DATA, "iris.csv")
MNIST = os.path.join(DATA, "mnist_5k.csv.gz")
MODEL_SPAN = Span("m.model", 3, 1, 3, 30)


def write(tmp_path, name: str, content: bytes | str) -> str:
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return str(path)


def fails(path: str, span: Span | None = None) -> DataError:
    """The error reading `path`, or binding every column of it as numbers."""
    with pytest.raises(DataError) as info:
        table = read_csv(path, span)
        for c in range(len(table.columns)):
            numeric_column(table, c)
    return info.value


def cols(kind: str, *names: str) -> Columns:
    return Columns(kind, names, MODEL_SPAN)


# ---- reading good files ---------------------------------------------------------------------

def test_boston_loads():
    t = read_csv(BOSTON)
    assert t.columns[:3] == ["CRIM", "ZN", "INDUS"] and t.columns[-1] == "MEDV"
    assert t.values.shape == (506, 14) and t.values.dtype == np.float64
    assert t.values[0, 0] == 0.00632 and t.values[0, -1] == 24
    assert t.lines[:2].tolist() == [2, 3] and t.name == "boston.csv"


def test_mnist_gz_loads():
    t = read_csv(MNIST)
    assert t.values.shape == (5000, 785) and t.columns[-1] == "label"


def test_bom_crlf_blank_lines_quoted_header(tmp_path):
    path = write(tmp_path, "x.csv", b'\xef\xbb\xbf"a", b ,c\r\n1,2,3\r\n\r\n 4 ,5e-1,-6\r\n\r\n\n')
    t = read_csv(path)
    assert t.columns == ["a", "b", "c"]
    assert t.values.tolist() == [[1, 2, 3], [4, 0.5, -6]]
    assert t.lines.tolist() == [2, 4]


def test_gz_without_gz_suffix_is_still_read(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(gzip.compress(b"a\n1\n"))
    assert read_csv(str(path)).values.tolist() == [[1.0]]


# ---- whole-file errors ------------------------------------------------------------------------

def test_missing_file_without_span(tmp_path):
    path = str(tmp_path / "nope.csv")
    e = fails(path)
    assert e.message == f"data file `{path}` not found"
    assert e.span == Span(path, 1, 1, 1, 1)


def test_missing_file_points_at_data_statement(tmp_path):
    e = fails(str(tmp_path / "nope.csv"), MODEL_SPAN)
    assert e.span == MODEL_SPAN
    assert "relative to the .model file" in e.hint


def test_directory(tmp_path):
    e = fails(str(tmp_path), MODEL_SPAN)
    assert "is a directory" in e.message and e.span == MODEL_SPAN


def test_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(b"a,b\n1,2\n")
    e = fails(str(path))
    assert e.message == f"data file `{path}` is not a gzip file"


def test_truncated_gz(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n" * 100)[:-10])
    assert "damaged gzip file" in fails(str(path)).message


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "x.csv", content)
    assert fails(path).message == f"data file `{path}` is empty"


def test_empty_gz(tmp_path):
    path = write(tmp_path, "x.csv.gz", b"")
    assert "is empty" in fails(path).message


def test_header_only(tmp_path):
    path = write(tmp_path, "x.csv", "a,b\n\n")
    e = fails(path)
    assert e.message == f"data file `{path}` has a header but no data rows"
    assert (e.span.line, e.span.col) == (1, 1) and e.source_line == "a,b"


def test_no_header(tmp_path):
    path = write(tmp_path, "x.csv", "1,2\n3,4\n")
    e = fails(path)
    assert "looks like data, not a header" in e.message and "header row" in e.hint


def test_duplicate_column_names(tmp_path):
    path = write(tmp_path, "x.csv", "a,b,a\n1,2,3\n")
    e = fails(path)
    assert e.message == f"column `a` appears twice in the header of `{path}` (columns 1 and 3)"
    assert e.span == Span(path, 1, 5, 1, 6)


def test_empty_column_name(tmp_path):
    path = write(tmp_path, "x.csv", ",a,b\n0,1,2\n")
    e = fails(path)
    assert e.message == f"column 1 of `{path}` has no name in the header"
    assert e.span == Span(path, 1, 1, 1, 2)


def test_not_utf8(tmp_path):
    path = write(tmp_path, "x.csv", b"a,b\n1,2\n3,\xff4\n")
    e = fails(path)
    assert e.message == f"data file `{path}` is not UTF-8 text: byte 0xff on line 3"
    assert e.span == Span(path, 3, 3, 3, 4)
    assert e.source_line == "3,\ufffd4"


# ---- cell errors: the span points into the CSV ------------------------------------------------

def test_non_numeric_cell(tmp_path):
    path = write(tmp_path, "h.csv", "CRIM,RM,MEDV\n0.1,6.5,24\n0.2, abc ,21\n")
    e = fails(path, MODEL_SPAN)
    assert e.message == f"non-numeric value 'abc' in column RM, row 2 of `{path}`"
    assert e.span == Span(path, 3, 6, 3, 9)
    assert e.source_line == "0.2, abc ,21"


def test_non_numeric_cell_in_gz(tmp_path):
    rows = "".join(f"{i},{i * 2}\n" for i in range(50))
    path = write(tmp_path, "h.csv.gz", "x,y\n" + rows + "7,oops\n")
    e = fails(path)
    assert e.message == f"non-numeric value 'oops' in column y, row 51 of `{path}`"
    assert e.span == Span(path, 52, 3, 52, 7)
    assert e.source_line == "7,oops"


def test_empty_cell(tmp_path):
    path = write(tmp_path, "h.csv", "a,b,c\n1,,3\n")
    e = fails(path)
    assert e.message == f"empty value in column b, row 1 of `{path}`"
    assert e.span == Span(path, 2, 3, 2, 4) and e.source_line == "1,,3"


def test_empty_last_cell(tmp_path):
    path = write(tmp_path, "h.csv", "a,b\n1,2\n3,\n")
    e = fails(path)
    assert e.message == f"empty value in column b, row 2 of `{path}`"
    assert e.span == Span(path, 3, 3, 3, 4)


@pytest.mark.parametrize("cell,kind", [("NaN", "NaN"), ("nan", "NaN"), ("inf", "infinite"),
                                       ("-Infinity", "infinite"), ("1e999", "infinite")])
def test_non_finite_cell(tmp_path, cell, kind):
    path = write(tmp_path, "h.csv", f"a,b\n1,2\n3,{cell}\n")
    e = fails(path)
    assert e.message == f"{kind} value '{cell}' in column b, row 2 of `{path}`"
    assert e.span == Span(path, 3, 3, 3, 3 + len(cell)) and e.source_line == f"3,{cell}"


def test_ragged_row(tmp_path):
    path = write(tmp_path, "h.csv", "a,b,c\n1,2,3\n4,5\n")
    e = fails(path)
    assert e.message == f"row 2 of `{path}` has 2 values but the header has 3 columns"
    assert e.span == Span(path, 3, 1, 3, 4) and e.source_line == "4,5"


def test_semicolons_get_a_hint(tmp_path):
    path = write(tmp_path, "h.csv", "a;b\n1;2\n")
    e = fails(path)
    assert "non-numeric value '1;2'" in e.message and "semicolons" in e.hint


def test_control_characters_are_not_echoed(tmp_path):
    path = write(tmp_path, "h.csv", "a,b\n1,\x1b[2J\n")
    e = fails(path)
    assert "\x1b" not in e.source_line and len(e.source_line) == len("1,\x1b[2J")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_load_or_raise_data_error(tmp_path, content):
    _load_or_data_error(write(tmp_path, "fuzz.csv", content))


TOKENS = [b"a", b"b", b"1", b"-2.5", b"1e999", b"nan", b",", b",", b"\n", b"\n", b"\r\n", b"\r",
          b" ", b"\t", b";", b'"', b"\xef\xbb\xbf", b"\xff", b"\x00", b"\xc3\xa9", b"x1"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.booleans())
def test_csv_like_bytes_load_or_raise_data_error(tmp_path, tokens, gz):
    _load_or_data_error(write(tmp_path, "fuzz.csv.gz" if gz else "fuzz.csv", b"".join(tokens)))


def _load_or_data_error(path: str) -> None:
    try:
        t = read_csv(path)
    except DataError as e:
        assert e.message and e.span is not None
        if e.span.file == path and e.span.line > 0 and e.source_line is not None:
            assert 1 <= e.span.col < e.span.end_col <= len(e.source_line) + 2
        return
    assert t.values.shape == (len(t.lines), len(t.columns)) and t.values.shape[0] >= 1
    for c in range(len(t.columns)):
        try:
            assert np.isfinite(numeric_column(t, c)).all()
        except DataError as e:
            assert c in t.text or c in t.bad_number
            assert e.span.file == path and 1 <= e.span.col < e.span.end_col <= len(e.source_line) + 2
    clean = 0 not in t.text and 0 not in t.bad_number  # a text target is an error of its own
    report = describe(t, t.columns[0] if clean else None).split("\ntext columns")[0]
    for name in t.columns:  # a column may be called `anan`: only the figures must not be nan
        report = report.replace(name, "")
    assert "nan" not in report


# ---- select -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boston() -> Table:
    return read_csv(BOSTON)


def test_select_one(boston):
    X, names = select(boston, cols("one", "MEDV"))
    assert X.shape == (506, 1) and names == ["MEDV"] and X[0, 0] == 24


def test_select_range_in_header_order(boston):
    X, names = select(boston, cols("range", "CRIM", "LSTAT"))
    assert X.shape == (506, 13) and names == boston.columns[:13]
    X, names = select(boston, cols("range", "RM", "RM"))
    assert names == ["RM"] and X.shape == (506, 1)


def test_select_backwards_range(boston):
    with pytest.raises(DataError) as info:
        select(boston, cols("range", "LSTAT", "CRIM"))
    e = info.value
    assert e.message == ("column range `LSTAT..CRIM` is backwards: `LSTAT` comes after `CRIM` "
                         "in boston.csv")
    assert e.span == MODEL_SPAN and "CRIM..LSTAT" in e.hint


def test_select_list_in_given_order(boston):
    X, names = select(boston, cols("list", "LSTAT", "RM"))
    assert names == ["LSTAT", "RM"]
    assert np.array_equal(X, boston.values[:, [12, 5]])


def test_unknown_column_did_you_mean(boston):
    with pytest.raises(DataError) as info:
        select(boston, cols("list", "RM", "MEDX"))
    e = info.value
    assert e.message == "unknown column `MEDX` in boston.csv"
    assert e.hint == "did you mean `MEDV`?" and e.span == MODEL_SPAN


def test_unknown_column_lists_columns(boston):
    with pytest.raises(DataError) as info:
        select(boston, cols("one", "zzzzzz"))
    assert info.value.hint == ("the columns are CRIM, ZN, INDUS, CHAS, NOX, RM, AGE, DIS, ... "
                               "(14 in all)")


def test_onehot_iris():
    iris = read_csv(IRIS)
    Y, names = select(iris, cols("onehot", "species"))
    assert names == ["species=0", "species=1", "species=2"]
    assert Y.shape == (150, 3) and np.all(Y.sum(axis=1) == 1)
    assert np.array_equal(Y.argmax(axis=1), iris.values[:, 4].astype(int))


def test_onehot_sorted_distinct_values(tmp_path):
    t = read_csv(write(tmp_path, "c.csv", "c\n5\n-1\n5\n2\n"))
    Y, names = select(t, cols("onehot", "c"))
    assert names == ["c=-1", "c=2", "c=5"]
    assert Y.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_onehot_needs_integers(boston):
    with pytest.raises(DataError) as info:
        select(boston, cols("onehot", "RM"))
    assert info.value.message == ("onehot(RM) needs whole-number class labels, but row 1 of "
                                  "boston.csv has 6.575")
    assert info.value.span == MODEL_SPAN


def test_onehot_too_many_classes(tmp_path):
    t = read_csv(write(tmp_path, "c.csv", "c\n" + "".join(f"{i}\n" for i in range(1001))))
    with pytest.raises(DataError) as info:
        select(t, cols("onehot", "c"))
    assert info.value.message == "onehot(c) would make 1001 classes (at most 1000)"


# ---- split and standardize --------------------------------------------------------------------

def test_split_matches_the_anchors():
    train, test = split_rows(506, 0.8, 666)
    p = np.random.default_rng(666).permutation(506)
    assert len(train) == 404 and len(test) == 102
    assert np.array_equal(train, p[:404]) and np.array_equal(test, p[404:])


def test_split_defaults():
    train, test = split_rows(10, 0.5, None)
    assert np.array_equal(np.concatenate([train, test]), np.random.default_rng(0).permutation(10))
    train, test = split_rows(7, None, 3)
    assert train.tolist() == list(range(7)) and test.size == 0


def test_standardizer_uses_training_rows_only(boston):
    X = boston.values[:, :13]
    train, test = split_rows(len(X), 0.8, 666)
    s = Standardizer().fit(X[train])
    assert np.allclose(s.mean, X[train].mean(axis=0)) and np.allclose(s.std, X[train].std(axis=0))
    assert not np.allclose(s.mean, X.mean(axis=0))
    Z = s.apply(X)
    assert np.allclose(Z[train].mean(axis=0), 0) and np.allclose(Z[train].std(axis=0), 1)
    assert not np.allclose(Z[test].mean(axis=0), 0)


def test_standardizer_constant_column_and_round_trip(tmp_path):
    X = np.array([[1.0, 0.1], [3.0, 0.1], [5.0, 0.1]])
    s = Standardizer().fit(X)
    assert s.std[1] == 1 and np.all(s.apply(X)[:, 1] == 0)
    np.savez(tmp_path / "p.npz", **{f"std.X.{k}": v for k, v in s.to_arrays().items()})
    with np.load(tmp_path / "p.npz") as f:
        back = Standardizer.from_arrays({k: f[f"std.X.{k}"] for k in ("mean", "std")})
    assert np.array_equal(back.apply(X), s.apply(X))


# ---- describe and correlations ----------------------------------------------------------------

def test_correlations_match_numpy(boston):
    assert np.allclose(correlations(boston), np.corrcoef(boston.values, rowvar=False))


def test_correlations_constant_column_is_nan_without_warnings(tmp_path):
    t = read_csv(write(tmp_path, "c.csv", "a,k,b\n1,7,2\n2,7,4\n3,7,7\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = correlations(t)
    assert np.isnan(c[1]).all() and np.isnan(c[:, 1]).all()
    assert c[0, 0] == 1 and 0.9 < c[0, 2] < 1


def test_describe_sorted_by_correlation(boston):
    text = describe(boston, "MEDV")
    lines = text.splitlines()
    assert lines[:4] == ["file     " + BOSTON, "rows     506", "columns  14", "target   MEDV"]
    table = lines[5:]
    assert table[0].split()[-1] == "corr(MEDV)"
    assert table[1].split()[0] == "MEDV" and table[1].split()[-1] == "target"
    assert [row.split()[0] for row in table[2:4]] == ["LSTAT", "RM"]
    assert table[2].split()[-1] == "-0.738"
    corr = [abs(float(row.split()[-1])) for row in table[2:]]
    assert corr == sorted(corr, reverse=True) and len(corr) == 13


def test_describe_without_target_and_constant_column(tmp_path):
    t = read_csv(write(tmp_path, "c.csv", "a,k\n1,7\n2,7\n"))
    assert "corr" not in describe(t, None)
    text = describe(t, "a")
    assert "nan" not in text.lower()
    assert text.splitlines()[-1].split() == ["k", "7", "0", "7", "7", "-"]


def test_describe_unknown_target(boston):
    with pytest.raises(DataError) as info:
        describe(boston, "medv")
    assert info.value.message == "unknown column `medv` in boston.csv"
    assert info.value.hint == "did you mean `MEDV`?"


def test_onehot_classes_map_new_rows_and_hold_text(tmp_path):
    """issue 12 item 1: new rows go through the training classes, not their own."""
    trained = OneHot.fit(read_csv(write(tmp_path, "c.csv", "c\n5\n-1\n5\n2\n")), cols("onehot", "c"))
    new = read_csv(write(tmp_path, "n.csv", "c\n5\n2\n"))
    assert select(new, cols("onehot", "c"), trained)[0].tolist() == [[0, 0, 1], [0, 1, 0]]
    with pytest.raises(DataError) as info:
        trained.encode(read_csv(write(tmp_path, "u.csv", "c\n5\n3\n")), cols("onehot", "c"))
    assert info.value.message.startswith(f"row 2 of `{tmp_path / 'u.csv'}` has class 3 in column c")
    assert info.value.span.line == 3
    text = OneHot.from_array(np.array(["blue", "green", "red"]))
    assert text.encode_values("C", "colour", ["red", "blue"]).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert text.first_unseen(np.array([1.0])) == 0  # numbers where the classes are text
    with pytest.raises(ValueError):
        OneHot.from_array(np.array(["red", "blue"]))  # not sorted: not a class list dsl saved


# ---- streaming, limits, and what is not a regular file (issue 13) ---------------------------

@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few bytes, so that a small file crosses many chunk boundaries."""
    import dsl.training.data
    monkeypatch.setattr(dsl.training.data, "CHUNK_BYTES", 7)


def test_chunks_keep_crlf_blank_lines_and_numbers(tmp_path, small_chunks):
    path = write(tmp_path, "x.csv", b'\xef\xbb\xbf"a", b ,c\r\n1,2,3\r\n\r\n 4 ,5e-1,-6\r\n\r\n\n'
                 + b"".join(b"%d,%d,%d\r" % (i, i, i) for i in range(30)))
    t = read_csv(path)
    assert t.columns == ["a", "b", "c"]
    assert t.values[:2].tolist() == [[1, 2, 3], [4, 0.5, -6]]
    assert t.values[2:, 0].tolist() == list(range(30)) and t.values.shape == (32, 3)
    assert t.lines.tolist() == [2, 4] + list(range(7, 37))


def test_chunks_errors_count_rows_and_lines_across_chunks(tmp_path, small_chunks):
    rows = "".join(f"{i},{i * 2}\n" for i in range(50))
    path = write(tmp_path, "h.csv.gz", "x,y\n\n" + rows + "7,oops\n")
    e = fails(path)
    assert e.message == f"non-numeric value 'oops' in column y, row 51 of `{path}`"
    assert e.span == Span(path, 53, 3, 53, 7) and e.source_line == "7,oops"
    path = write(tmp_path, "n.csv", "x,y\n" + rows + "7,nan\n")
    assert fails(path).message == f"NaN value 'nan' in column y, row 51 of `{path}`"
    path = write(tmp_path, "r.csv", "x,y\n" + rows + "7\n")
    assert fails(path).span == Span(path, 52, 1, 52, 2)
    path = write(tmp_path, "u.csv", ("x,y\n" + rows).encode() + b"3,\xff4\n")
    e = fails(path)
    assert e.message == f"data file `{path}` is not UTF-8 text: byte 0xff on line 52"
    assert e.span == Span(path, 52, 3, 52, 4) and e.source_line == "3,\ufffd4"


def test_peak_memory_is_the_array_and_a_chunk(tmp_path):
    """The old reader peaked at 17 times the file's size; now the float array is allocated
    once and filled a chunk at a time."""
    import tracemalloc

    import dsl.training.data
    rows = np.random.default_rng(1).standard_normal((200_000, 8))
    path = tmp_path / "big.csv"
    np.savetxt(path, rows, delimiter=",", header=",".join("abcdefgh"), comments="", fmt="%.17g")
    tracemalloc.start()
    try:
        t = read_csv(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(t.values, rows)
    assert peak < 1.1 * (t.values.nbytes + t.lines.nbytes) + 10 * dsl.training.data.CHUNK_BYTES
    assert peak < 0.75 * os.path.getsize(path)


def test_a_file_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    import dsl.training.data
    monkeypatch.setattr(dsl.training.data, "MAX_TEXT_BYTES", 100)
    path = write(tmp_path, "x.csv", "a,b\n" + "1,2\n" * 30)
    e = fails(path, MODEL_SPAN)
    assert e.message == f"data file `{path}` is 124 bytes, more than the limit of 100 bytes"
    assert e.span == MODEL_SPAN and "Limits" in e.hint


def test_gzip_bomb_is_refused_at_the_limit(tmp_path, monkeypatch):
    import dsl.training.data
    monkeypatch.setattr(dsl.training.data, "MAX_TEXT_BYTES", 1 << 20)
    path = write(tmp_path, "bomb.csv.gz", b"a\n" + b"0\n" * (1 << 20))
    e = fails(path)
    assert e.message == f"data file `{path}` expands to more than 1 MiB of text"
    assert "gzip bomb" in e.hint


def test_too_many_values_are_refused_before_parsing(tmp_path, monkeypatch):
    import dsl.training.data
    monkeypatch.setattr(dsl.training.data, "MAX_VALUES_BYTES", 1000)
    path = write(tmp_path, "x.csv", "a,b\n" + "1,2\n" * 100)
    e = fails(path)
    assert e.message == (f"data file `{path}` has up to 101 rows of 2 columns: 1.58 KiB as "
                         "floats, more than the limit of 1000 bytes")


def test_a_line_without_end_is_refused(tmp_path, monkeypatch):
    import dsl.training.data
    monkeypatch.setattr(dsl.training.data, "MAX_LINE_BYTES", 50)
    monkeypatch.setattr(dsl.training.data, "CHUNK_BYTES", 8)
    path = write(tmp_path, "x.csv", "a," * 100)
    assert fails(path).message == f"data file `{path}` has a line longer than 50 bytes"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused(device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    e = fails(device, MODEL_SPAN)
    assert e.message == (f"cannot read data file `{device}`: it is a character device, not a "
                         "regular file")
    assert e.span == MODEL_SPAN


def test_a_fifo_is_refused_without_blocking(tmp_path):
    path = str(tmp_path / "pipe.csv")
    os.mkfifo(path)
    e = fails(path)
    assert e.message == (f"cannot read data file `{path}`: it is a FIFO (named pipe), not a "
                         "regular file")


def test_describe_with_a_target_needs_little_beside_the_array():
    """The correlations with the target were z-scores of the whole array: six copies of it."""
    import tracemalloc
    rng = np.random.default_rng(3)
    t = Table("big.csv", [f"c{i}" for i in range(40)], rng.standard_normal((50_000, 40)))
    tracemalloc.start()
    try:
        describe(t, "c7")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * t.values.nbytes


# ---- text columns -----------------------------------------------------------------------------

PEOPLE = ("name,dept,date,age,salary\n"
          "Ada,eng,2024-01-03,36,120\n"
          "Bob,ops,2024-02-11,41,95\n"
          "Cy,eng,,29,101\n"
          "Di,sales,2024-03-30,50,88\n")


def test_columns_the_model_does_not_bind_may_hold_anything(tmp_path):
    t = read_csv(write(tmp_path, "p.csv", PEOPLE))
    assert sorted(t.text) == [0, 1, 2]
    X, names = select(t, cols("list", "age", "salary"))
    assert names == ["age", "salary"] and X.tolist() == [[36, 120], [41, 95], [29, 101], [50, 88]]


def test_binding_a_text_column_as_numbers_names_its_row_and_column(tmp_path):
    path = write(tmp_path, "p.csv", PEOPLE)
    t = read_csv(path)
    with pytest.raises(DataError) as info:
        select(t, cols("range", "dept", "age"))
    e = info.value
    assert e.message == f"non-numeric value 'eng' in column dept, row 1 of `{path}`"
    assert e.span == Span(path, 2, 5, 2, 8) and e.source_line == "Ada,eng,2024-01-03,36,120"
    assert "onehot(dept)" in e.hint
    with pytest.raises(DataError) as info:  # an empty cell among text: named as empty
        select(t, cols("onehot", "date"))
    assert info.value.message == f"empty value in column date, row 3 of `{path}`"


def test_onehot_of_a_text_column_has_sorted_categories(tmp_path):
    t = read_csv(write(tmp_path, "p.csv", PEOPLE))
    Y, names = select(t, cols("onehot", "dept"))
    assert names == ["dept=eng", "dept=ops", "dept=sales"]
    assert Y.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]


def test_nan_in_a_column_the_model_does_not_bind_is_fine(tmp_path):
    t = read_csv(write(tmp_path, "p.csv", "a,b\n1,nan\n2,3\n"))
    assert select(t, cols("one", "a"))[0].ravel().tolist() == [1, 2]
    with pytest.raises(DataError, match="NaN value 'nan' in column b, row 1"):
        select(t, cols("one", "b"))


def test_describe_lists_text_columns_with_their_distinct_values(tmp_path):
    t = read_csv(write(tmp_path, "p.csv", PEOPLE))
    report = describe(t, "salary")
    assert "text columns (a model may bind one through `onehot(NAME)`):" in report
    assert "dept   3 distinct: 'eng', 'ops', 'sales'" in report
    assert "date   4 distinct: (empty), '2024-01-03', '2024-02-11', '2024-03-30'" in report
    assert "\nage            39      7.649" in report  # numeric columns keep their statistics
    with pytest.raises(DataError, match="non-numeric value 'Ada' in column name"):
        describe(t, "name")


def test_text_columns_across_chunks(tmp_path, small_chunks):
    """A column that turns text in a later chunk keeps its earlier cells (as %g), and the first
    word and NaN are named with their rows, counted from the file's first."""
    rows = "".join(f"{i},{i % 3},x{i % 2}\n" for i in range(40))
    path = write(tmp_path, "c.csv", "a,b,c\n" + rows + "40,word,x0\n41,nan,\n")
    t = read_csv(path)
    assert sorted(t.text) == [1, 2]
    assert t.text[1][:4] == ["0", "1", "2", "0"] and t.text[1][-2:] == ["word", "nan"]
    assert t.text[2][:2] == ["x0", "x1"] and t.text[2][-1] == ""
    assert t.first_text[1].row == 41 and t.first_text[1].span.line == 42
    assert t.empty[2].row == 42
    with pytest.raises(DataError, match="non-numeric value 'word' in column b, row 41"):
        select(t, cols("one", "b"))
    assert select(t, cols("one", "a"))[0].ravel().tolist() == list(range(42))
