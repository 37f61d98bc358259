"""CSV data for `.model` files: reading, column selection, splitting, standardizing, describing.

Every problem with a file's content is a `DataError` whose span points into the CSV itself
(line and character columns of the bad cell) and carries the line's text, so the renderer can
show a caret even for a gzipped file.
"""
from __future__ import annotations

import codecs
import gzip
import os
import re
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import DataError, InternalError, Span, suggest
from dsl.front.files import open_regular
from dsl.front.ast import Columns

GZIP_MAGIC = b"\x1f\x8b"
MAX_ONEHOT_CLASSES = 1000
UNSEEN_HINT = ("a model predicts only the classes it was trained on; drop these rows, or train "
               "again with data that has this class")


@dataclass(frozen=True)
class Cell:
    """One cell, kept to point at it later: the first cell of a column that is not a number."""

    row: int  # 1-based, among the data rows
    text: str
    span: Span
    line: str  # the file line, for the caret


@dataclass
class Table:
    """A CSV: column names in header order and a float64 matrix (rows x columns). A column
    with any cell that is not a number is a text column: its cells are kept as strings in
    `text` (its `values` are NaN), and it can feed a model only through `onehot`."""

    path: str
    columns: list[str]
    values: np.ndarray
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each row's file line
    text: dict[int, list[str]] = field(default_factory=dict)  # column -> its cells, stripped
    first_text: dict[int, Cell] = field(default_factory=dict)  # column -> its first non-number
    empty: dict[int, Cell] = field(default_factory=dict)  # column -> its first empty cell
    bad_number: dict[int, Cell] = field(default_factory=dict)  # column -> first NaN or inf

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


# ---- reading ------------------------------------------------------------------------------
#
# A CSV is read twice, streaming: a first pass counts its lines (refusing a file or an expanded
# .csv.gz larger than MAX_TEXT_BYTES, and a float array larger than MAX_VALUES_BYTES, before any
# parsing), the second parses CHUNK_BYTES of whole lines at a time into the one float array,
# allocated once. Peak memory is that array plus a chunk and its parsing. A cell's text is seen
# only inside its chunk, so a column could be kept as text chunk by chunk too.

CHUNK_BYTES = 1 << 20  # 1 MiB of text parsed at a time
MAX_TEXT_BYTES = 1 << 30  # a data file's text, a .csv.gz's once expanded
MAX_VALUES_BYTES = 1 << 30  # the float64 array of its values (rows x columns x 8 bytes)
MAX_LINE_BYTES = 1 << 26  # one line (a row of a million columns is about 10 MiB)
MAX_COLUMNS = 100_000  # a header's names are Python strings: 32 million would take gigabytes


def read_csv(path: str, span: Span | None = None) -> Table:
    """Load a CSV (or gzipped CSV) with a header row; a malformed file is a DataError. Cells
    that are not numbers, NaN or infinite are an error only in a column the model binds as
    numbers (`select`); any column may hold text.

    `span` is the model's `data` statement: problems with the file as a whole point there.
    """
    most_rows = sum(_count_lines(chunk) for chunk in _chunks(path, span))  # lines - header
    columns: list[str] | None = None
    values = lines = None
    n, offset = 0, 0  # rows parsed; lines before the chunk
    for chunk in _chunks(path, span):
        text = _decode(path, chunk, offset, first=offset == 0)
        parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        keep = [i for i, line in enumerate(parts) if line.strip()]
        numbers = offset + 1 + np.asarray(keep, dtype=np.int64)
        rows = [parts[i] for i in keep] if len(keep) < len(parts) else parts
        offset += len(parts) - 1
        if columns is None:
            if not rows:
                continue
            header_no, header_line = int(numbers[0]), rows[0]
            columns = _parse_header(path, header_no, header_line)
            rows, numbers = rows[1:], numbers[1:]
            values, lines = _allocate(path, span, most_rows, len(columns))
            table = Table(path, columns, values, lines)
        if not rows:
            continue
        if n + len(rows) > len(values):
            raise DataError(f"data file `{path}` changed while it was read",
                            _whole_file(path, span), "read it again once it is written")
        if n == 0:
            _check_looks_like_csv(path, columns, int(numbers[0]), rows[0])
        values[n:n + len(rows)] = _parse_rows(table, rows, numbers, n)
        lines[n:n + len(rows)] = numbers
        n += len(rows)
    if columns is None:
        raise DataError(f"data file `{path}` is empty", _whole_file(path, span),
                        "a data file needs a header row naming the columns, then rows of numbers")
    if n == 0:
        raise DataError(f"data file `{path}` has a header but no data rows",
                        _line_span(path, header_no, header_line),
                        "add rows of numbers below the header", source_line=_printable(header_line))
    table.values, table.lines = values[:n], lines[:n]
    return table


def _allocate(path: str, span: Span | None, most_rows: int, ncols: int):
    """The float array for every row (and their line numbers), refused above MAX_VALUES_BYTES."""
    need = most_rows * ncols * 8
    if need > MAX_VALUES_BYTES:
        raise DataError(f"data file `{path}` has up to {most_rows:,} rows of {ncols:,} columns: "
                        f"{fmt_bytes(need)} as floats, more than the limit of "
                        f"{fmt_bytes(MAX_VALUES_BYTES)}", _whole_file(path, span),
                        "use fewer rows or columns (see `Limits` in docs/LANGUAGE.md)")
    return np.empty((most_rows, ncols), dtype=np.float64), np.empty(most_rows, dtype=np.int64)


def fmt_bytes(n: int) -> str:
    """A size in bytes for messages: `298 GiB`, `1.58 KiB`."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _count_lines(chunk: bytes) -> int:
    """Line breaks in whole lines: \\n, \\r\\n or a lone \\r."""
    return chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")


def _chunks(path: str, span: Span | None):
    """The file's text as bytes, about CHUNK_BYTES of whole lines at a time (a `\\r` that ends
    a block waits for the next, which may start with its `\\n`)."""
    carry: list[bytes] = []
    carried = 0
    for block in _blocks(path, span):
        cut = max(block.rfind(b"\n"), block.rfind(b"\r", 0, len(block) - 1)) + 1
        if cut == 0:
            carry.append(block)
            carried += len(block)
            if carried > MAX_LINE_BYTES:
                raise DataError(f"data file `{path}` has a line longer than "
                                f"{fmt_bytes(MAX_LINE_BYTES)}", _whole_file(path, span),
                                "is it a CSV file? (see `Limits` in docs/LANGUAGE.md)")
            continue
        yield b"".join(carry + [block[:cut]]) if carry else block[:cut]
        carry, carried = [block[cut:]], len(block) - cut
    if carried:
        yield b"".join(carry)


def _blocks(path: str, span: Span | None):
    """The file's bytes (a gzipped file's expanded) CHUNK_BYTES at a time, up to MAX_TEXT_BYTES."""
    where = _whole_file(path, span)
    hint = "paths in `data` are relative to the .model file" if span is not None else None
    try:
        f = open_regular(path)
    except FileNotFoundError:
        raise DataError(f"data file `{path}` not found", where, hint) from None
    except IsADirectoryError:
        raise DataError(f"data file `{path}` is a directory", where, hint) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise DataError(f"cannot read data file `{path}`: {reason}", where, hint) from None
    with f:
        try:
            head = f.read(len(GZIP_MAGIC))
            f.seek(0)
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise DataError(f"cannot read data file `{path}`: {e.strerror or e}", where,
                            hint) from None
        gz = head == GZIP_MAGIC
        if path.endswith(".gz") and not gz and head:
            raise DataError(f"data file `{path}` is not a gzip file", where,
                            "rename it without `.gz` if it is plain CSV text")
        if not gz and size > MAX_TEXT_BYTES:
            raise DataError(f"data file `{path}` is {fmt_bytes(size)}, more than the limit of "
                            f"{fmt_bytes(MAX_TEXT_BYTES)}", where,
                            "use a smaller file (see `Limits` in docs/LANGUAGE.md)")
        stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
        total = 0
        while True:
            try:
                block = stream.read(CHUNK_BYTES)
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise DataError(f"data file `{path}` is a damaged gzip file ({e})", where,
                                "the file may be truncated; download or compress it again") from None
            except OSError as e:
                raise DataError(f"cannot read data file `{path}`: {e.strerror or e}", where,
                                hint) from None
            if not block:
                return
            total += len(block)
            if total > MAX_TEXT_BYTES:
                raise DataError(f"data file `{path}` expands to more than "
                                f"{fmt_bytes(MAX_TEXT_BYTES)} of text", where,
                                "is it a gzip bomb? (see `Limits` in docs/LANGUAGE.md)")
            yield block


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a name in a .model file (LANGUAGE.md section 1)
MAX_HEADER_BYTES = 1 << 20  # `check` reads a data file up to its header line, at most this


def read_header(path: str, span: Span | None = None) -> list[str]:
    """The column names of a CSV (or gzipped CSV), reading no further than its header line:
    what `dsl check` needs to check a model's `<-` inputs without loading the rows."""
    where = _whole_file(path, span)
    hint = "paths in `data` are relative to the .model file" if span is not None else None
    try:
        with open_regular(path) as f:  # a FIFO or a device would block or never end
            gz = f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
            head = b""
            while len(head) <= MAX_HEADER_BYTES:
                block = stream.readline(MAX_HEADER_BYTES + 1 - len(head))
                if not block:
                    break
                head += block
                if head.strip() and head.endswith((b"\n", b"\r")):
                    break
    except FileNotFoundError:
        raise DataError(f"data file `{path}` not found", where, hint) from None
    except IsADirectoryError:
        raise DataError(f"data file `{path}` is a directory", where, hint) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"data file `{path}` is a damaged gzip file ({e})", where,
                        "the file may be truncated; download or compress it again") from None
    except OSError as e:
        raise DataError(f"cannot read data file `{path}`: {e.strerror or e}", where,
                        "a data file is a CSV file (or a gzipped one)") from None
    if len(head) > MAX_HEADER_BYTES:
        raise DataError(f"the first line of data file `{path}` is longer than "
                        f"{MAX_HEADER_BYTES >> 20} MiB", where, "is it a CSV file?")
    lines = _decode(path, head, 0, first=True).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    numbered = [(no, line) for no, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(f"data file `{path}` is empty", where,
                        "a data file needs a header row naming the columns, then rows of numbers")
    return _parse_header(path, *numbered[0])


def _decode(path: str, raw: bytes, offset: int, first: bool) -> str:
    """A chunk of whole lines as text; `offset` lines come before it in the file."""
    if first and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line_no = offset + 1 + before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n")
        start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
        ends = [i for i in (raw.find(b"\n", e.start), raw.find(b"\r", e.start)) if i >= 0]
        line = raw[start:min(ends) if ends else len(raw)].decode("utf-8", "replace")
        col = len(raw[start:e.start].decode("utf-8", "replace")) + 1
        binary = "\x00" in line or sum(not ch.isprintable() for ch in line) > len(line) // 10
        raise DataError(f"data file `{path}` is not UTF-8 text: byte 0x{raw[e.start]:02x} "
                        f"on line {line_no}", Span(path, line_no, col, line_no, col + 1),
                        "is it a CSV file? save it as UTF-8 text",
                        source_line=None if binary else _printable(line)) from None


def _parse_header(path: str, line_no: int, line: str) -> list[str]:
    if line.count(",") >= MAX_COLUMNS:
        raise DataError(f"the header of `{path}` has {line.count(',') + 1:,} columns, more than "
                        f"the limit of {MAX_COLUMNS:,}", Span(path, line_no, 1, line_no, 2),
                        "is it a CSV file? (see `Limits` in docs/LANGUAGE.md)")
    cells = line.split(",")
    names = [_unquote(c.strip()) for c in cells]
    offsets = _cell_offsets(cells)
    if all(_is_number(n) for n in names):
        raise DataError(f"the first line of `{path}` looks like data, not a header",
                        _line_span(path, line_no, line),
                        "add a header row with a name for each column",
                        source_line=_printable(line))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"column {i + 1} of `{path}` has no name in the header",
                            _cell_span(path, line_no, cells[i], offsets[i]),
                            "every column needs a name in the header row",
                            source_line=_printable(line))
        if name in seen:
            raise DataError(f"column `{name}` appears twice in the header of `{path}` "
                            f"(columns {seen[name] + 1} and {i + 1})",
                            _cell_span(path, line_no, cells[i], offsets[i]),
                            "rename one of them so that every column name is unique",
                            source_line=_printable(line))
        seen[name] = i
    return names


def _check_looks_like_csv(path: str, columns: list[str], line_no: int, line: str) -> None:
    """A first row without a single number (nor semicolons or tabs for separators): the file is
    not a CSV of numbers (/etc/passwd, a text file), and its content is no business of an error
    message: say where and how many values, not what they are."""
    cells = line.split(",")
    if not any(_is_number(c) for c in cells) and not _separator_hint(line):
        raise DataError(f"data file `{path}` does not look like a CSV of numbers: line {line_no}, "
                        f"its first row, has {len(cells)} value(s) and none is a number (the "
                        f"header has {len(columns)} column(s))", Span(path, line_no, 1, line_no, 1),
                        "a data file is a header row naming the columns, then rows of numbers "
                        "separated by commas; its lines are not shown, as it may not be a CSV")


def _parse_rows(table: Table, rows: list[str], numbers: np.ndarray, before: int) -> np.ndarray:
    """A chunk's rows as floats, parsed by numpy in one go; only when that fails, column by
    column, keeping the cells of a column that holds anything but numbers as text (NaN in the
    floats). `numbers` are the rows' file lines, `before` the rows of earlier chunks (messages
    count rows from the file's first). The first NaN or infinite value of each numeric column
    is noted, for an error if a model binds it."""
    columns = table.columns
    values = _loadtxt(rows)
    cells = None
    if values is None or values.shape != (len(rows), len(columns)):
        _check_row_lengths(table.path, columns, rows, numbers, before)
        values = np.full((len(rows), len(columns)), np.nan)
        cells = [line.split(",") for line in rows]
        for c in range(len(columns)):
            column = [r[c] for r in cells]
            parsed = _loadtxt(column) if all(x.strip() for x in column) else None
            if parsed is not None and parsed.shape == (len(rows), 1) and c not in table.text:
                values[:, c] = parsed[:, 0]
                continue
            if c not in table.text:  # a column turning text after a chunk of numbers keeps them
                table.text[c] = [f"{v:g}" for v in table.values[:before, c]]
            table.text[c] += [x.strip() for x in column]
            _note_first(table.path, table.first_text, c, rows, numbers, before,
                        (r for r, x in enumerate(column) if x.strip() and not _is_number(x)))
            _note_first(table.path, table.empty, c, rows, numbers, before,
                        (r for r, x in enumerate(column) if not x.strip()))
    elif table.text:  # numbers in this chunk, in columns already text
        cells = [line.split(",") for line in rows]
        for c in table.text:
            table.text[c] += [r[c].strip() for r in cells]
            values[:, c] = np.nan
    bad = ~np.isfinite(values)
    for c in np.flatnonzero(bad.any(axis=0)):
        if c not in table.text:
            _note_first(table.path, table.bad_number, int(c), rows, numbers, before,
                        iter([int(np.argmax(bad[:, c]))]))
    return values


def _note_first(path: str, found: dict[int, Cell], c: int, rows, numbers, before: int,
                where) -> None:
    """Keep the first cell of column `c` (among the rows `where` yields) unless one is kept."""
    r = next(where, None)
    if r is None or c in found:
        return
    cells = rows[r].split(",")
    found[c] = Cell(before + r + 1, cells[c],
                    _cell_span(path, int(numbers[r]), cells[c], _cell_offsets(cells)[c]),
                    _printable(rows[r]))


def _check_row_lengths(path, columns, rows, numbers, before) -> None:
    want = len(columns) - 1
    for i, line in enumerate(rows):
        if line.count(",") != want:
            got = line.count(",") + 1
            raise DataError(f"row {before + i + 1} of `{path}` has {got} values but the header "
                            f"has {len(columns)} columns", _line_span(path, int(numbers[i]), line),
                            _separator_hint(line) or "every row needs one value per column",
                            source_line=_printable(line))


def _no_empty_cell(table: Table, c: int) -> None:
    cell = table.empty.get(c)
    if cell is not None:
        raise DataError(f"empty value in column {table.columns[c]}, row {cell.row} of "
                        f"`{table.path}`", cell.span, "fill in or drop rows with missing values",
                        source_line=cell.line)


def _text_hint(table: Table, c: int) -> str:
    """A stray word among numbers is a typo; a column of words is categories (or names)."""
    cells = table.text[c]
    numbers = sum(1 for x in cells if _is_float(x))
    if numbers > len(cells) / 2:
        return "every cell of a column bound as numbers must be a number"
    name = table.columns[c]
    return f"`{name}` holds text: bind it through `onehot({name})` to use its categories"


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def numeric_column(table: Table, c: int, span: Span | None = None) -> np.ndarray:
    """Column `c` as numbers, or a DataError at its first cell that is not a finite number."""
    name = table.columns[c]
    cell = table.first_text.get(c)
    if cell is None:
        _no_empty_cell(table, c)
    else:
        raise DataError(f"non-numeric value {_show(cell.text)} in column {name}, row {cell.row} "
                        f"of `{table.path}`", cell.span,
                        _separator_hint(cell.line) or _text_hint(table, c),
                        source_line=cell.line)
    cell = table.bad_number.get(c)
    if cell is not None:
        kind = "NaN" if np.isnan(float(cell.text)) else "infinite"
        raise DataError(f"{kind} value {_show(cell.text)} in column {name}, row {cell.row} "
                        f"of `{table.path}`", cell.span,
                        "remove or fill in missing and infinite values before training",
                        source_line=cell.line)
    return table.values[:, c]


def _loadtxt(lines: list[str]) -> np.ndarray | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.loadtxt(lines, delimiter=",", comments=None, ndmin=2, dtype=np.float64)
    except Exception:
        return None


def _is_number(cell: str) -> bool:
    """The same test numpy applies when parsing the whole file."""
    return bool(cell.strip()) and _loadtxt([cell]) is not None


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].strip()
    return name


def _cell_offsets(cells: list[str]) -> list[int]:
    offsets, at = [], 0
    for cell in cells:
        offsets.append(at)
        at += len(cell) + 1
    return offsets


def _cell_span(path: str, line_no: int, cell: str, offset: int) -> Span:
    """The span of a cell's text without its surrounding blanks (at least one column wide)."""
    lead = len(cell) - len(cell.lstrip())
    col = offset + lead + 1
    return Span(path, line_no, col, line_no, col + max(len(cell.strip()), 1))


def _line_span(path: str, line_no: int, line: str) -> Span:
    return Span(path, line_no, 1, line_no, max(len(line), 1) + 1)


def _whole_file(path: str, span: Span | None) -> Span:
    return span if span is not None else Span(path, 1, 1, 1, 1)


def _separator_hint(line: str) -> str | None:
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if sep in line:
            return f"values must be separated by commas, but this line contains {name}"
    return None


def _show(cell: str) -> str:
    cell = cell.strip()
    return repr(cell if len(cell) <= 30 else cell[:27] + "...")


def _printable(line: str) -> str:
    """The line for display: control characters become U+FFFD, one for one, so columns hold."""
    return "".join(ch if ch == "\t" or ch.isprintable() else "\ufffd" for ch in line)


# ---- columns ------------------------------------------------------------------------------

def select(table: Table, cols: Columns, onehot: OneHot | None = None
           ) -> tuple[np.ndarray, list[str]]:
    """The matrix (rows x k) an `input ... <- COLS` is fed with, and the names of its columns;
    `onehot(COLUMN)` through the given classes, or the table's own. Every column bound as
    numbers must hold finite numbers only (the first bad cell is named)."""
    if cols.kind == "one":
        idx = [column_index(table, cols.names[0], cols.span)]
    elif cols.kind == "list":
        idx = [column_index(table, n, cols.span) for n in cols.names]
    elif cols.kind == "range":
        a, b = (column_index(table, n, cols.span) for n in cols.names)
        if a > b:
            first, last = cols.names
            raise DataError(f"column range `{first}..{last}` is backwards: `{first}` comes after "
                            f"`{last}` in {table.name}", cols.span,
                            f"write `{last}..{first}`; a range follows the header's order")
        idx = list(range(a, b + 1))
    elif cols.kind == "onehot":
        onehot = onehot or OneHot.fit(table, cols)
        name = table.columns[column_index(table, cols.names[0], cols.span)]
        return onehot.encode(table, cols), onehot.labels(name)
    else:
        raise InternalError(f"unknown column selection kind {cols.kind!r}")
    for i in idx:
        numeric_column(table, i, cols.span)
    if cols.kind == "range":  # a view, as numpy slices: the same bits wherever it goes
        return table.values[:, idx[0]:idx[-1] + 1], [table.columns[i] for i in idx]
    return table.values[:, idx], [table.columns[i] for i in idx]


@dataclass
class OneHot:
    """The classes of a `onehot(COLUMN)` input, sorted: found in the training file, saved with
    the params, and the only classes new rows may have (`predict` maps rows through them, so a
    class keeps its column). Class numbers are float64; the array may as well hold text
    categories (a numpy `str_` array), which sort and compare the same way."""

    classes: np.ndarray

    @classmethod
    def fit(cls, table: Table, cols: Columns) -> OneHot:
        name, v = _onehot_column(table, cols)
        if v.dtype.kind == "f":
            not_int = np.flatnonzero(v != np.round(v))
            if len(not_int):
                r = int(not_int[0])
                raise DataError(f"onehot({name}) needs whole-number class labels, but row "
                                f"{r + 1} of {table.name} has {v[r]:g}", cols.span,
                                "onehot is for a column of class numbers such as 0, 1, 2")
        classes = np.unique(v)
        if len(classes) > MAX_ONEHOT_CLASSES:
            raise DataError(f"onehot({name}) would make {len(classes)} classes (at most "
                            f"{MAX_ONEHOT_CLASSES})", cols.span,
                            "is this a numeric column rather than class labels?")
        return cls(classes)

    def encode(self, table: Table, cols: Columns) -> np.ndarray:
        """One 0/1 column per class; a row of a class not in the list is an error that names
        the file, the row and the value."""
        name, v = _onehot_column(table, cols)
        r = self.first_unseen(v)
        if r is not None:
            line = table.lines[r] if r < len(table.lines) else 1
            raise DataError(f"row {r + 1} of `{table.path}` has class {self.show(v[r])} in column "
                            f"{name}, {self.not_trained(name)}", Span(table.path, line, 1, line, 2),
                            UNSEEN_HINT)
        return self.columns(v)

    def encode_values(self, name: str, column: str, v) -> np.ndarray:
        """Class labels of input `name` (bound to `onehot(column)`) given as values (the API),
        one per row, as one-hot columns."""
        v = np.asarray(v)
        if self.classes.dtype.kind == "f" and v.dtype.kind in "iub":
            v = v.astype(np.float64)
        r = self.first_unseen(v)
        if r is not None:
            raise DataError(f"value {r + 1} given for `{name}` is class {self.show(v[r])}, "
                            f"{self.not_trained(column)}", hint=UNSEEN_HINT)
        return self.columns(v)

    def first_unseen(self, v: np.ndarray) -> int | None:
        """The first row whose class is not one of the classes."""
        if v.dtype.kind != self.classes.dtype.kind:  # text where numbers were, or the reverse
            return 0 if len(v) else None
        at = np.minimum(np.searchsorted(self.classes, v), len(self.classes) - 1)
        unseen = np.flatnonzero(self.classes[at] != v)
        return int(unseen[0]) if len(unseen) else None

    def columns(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((len(v), len(self.classes)), dtype=np.float64)
        out[np.arange(len(v)), np.searchsorted(self.classes, v)] = 1.0
        return out

    def not_trained(self, name: str) -> str:
        return f"which onehot({name}) did not have in training (its classes: {self.shown()})"

    @classmethod
    def from_array(cls, classes: np.ndarray) -> OneHot:
        """Classes read back from a params file: a sorted list of distinct numbers or texts."""
        if not (classes.ndim == 1 and len(classes) and classes.dtype.kind in "fU"
                and np.all(classes[1:] > classes[:-1])):
            raise ValueError("the one-hot classes are not a sorted list of distinct classes")
        return cls(classes)

    def labels(self, name: str) -> list[str]:
        """The names of the columns: `species=0`, `species=1`, ..."""
        return [f"{name}={self.show(c)}" for c in self.classes]

    def show(self, c) -> str:
        return f"{c:g}" if self.classes.dtype.kind == "f" else str(c)

    def shown(self, most: int = 10) -> str:
        parts = [self.show(c) for c in self.classes[:most]]
        return ", ".join(parts) + (f", ... ({len(self.classes)} in all)"
                                   if len(self.classes) > most else "")


def _onehot_column(table: Table, cols: Columns) -> tuple[str, np.ndarray]:
    """The column's classes, row by row: numbers (float64), or the cells of a text column."""
    i = column_index(table, cols.names[0], cols.span)
    if i in table.text:
        _no_empty_cell(table, i)
        return table.columns[i], np.array(table.text[i], dtype=str)
    return table.columns[i], numeric_column(table, i, cols.span)


def column_index(table: Table, name: str, span: Span | None = None) -> int:
    """The position of a column, or a DataError with a did-you-mean hint."""
    if name in table.columns:
        return table.columns.index(name)
    # Only names a model can write are offered: a file that is not a CSV (/etc/passwd) has a
    # "header" of its first line, which is no business of an error message.
    nameable = [c for c in table.columns if _NAME.fullmatch(c)]
    by_lower: dict[str, str] = {}
    for column in nameable:
        by_lower.setdefault(column.lower(), column)
    close = suggest(name.lower(), by_lower)
    if close:
        hint = f"did you mean `{by_lower[close]}`?"
    elif nameable:
        shown = ", ".join(nameable[:8])
        more = f", ... ({len(nameable)} in all)" if len(nameable) > 8 else ""
        hint = f"the columns are {shown}{more}"
    else:
        hint = (f"its header has {len(table.columns)} column(s), none of them a name a model can "
                "use: is it a CSV file?")
    raise DataError(f"unknown column `{name}` in {table.name}", span, hint)


# ---- rows ---------------------------------------------------------------------------------

def split_rows(n: int, split: float | None, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: a seeded permutation cut at `split` (the anchors' split)."""
    if split is None:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng(seed if seed is not None else 0)
    p = rng.permutation(n)
    k = int(split * n)
    return p[:k], p[k:]


@dataclass
class Standardizer:
    """Per-column z-scoring, fitted on the training rows and saved with the params for `predict`."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            raise DataError("there are no training rows to standardize on")
        with np.errstate(all="ignore"):
            mean = X.mean(axis=0)
            std = X.std(axis=0)
        constant = X.max(axis=0) == X.min(axis=0)
        mean = np.where(constant, X[0], mean)
        std = np.where(constant | ~np.isfinite(std) | (std == 0), 1.0, std)
        self.mean, self.std = mean, std
        return self

    def apply(self, X: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise InternalError("Standardizer.apply called before fit")
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.mean is None or self.std is None:
            raise InternalError("Standardizer.to_arrays called before fit")
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> Standardizer:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


# ---- describing ---------------------------------------------------------------------------

def correlations(table: Table) -> np.ndarray:
    """Pearson correlations between all columns; nan where a column is constant, no warnings."""
    z, constant = _zscores(table.values)
    c = np.clip(z.T @ z / max(len(z), 1), -1.0, 1.0)
    np.fill_diagonal(c, 1.0)
    c[constant, :] = np.nan
    c[:, constant] = np.nan
    return c


def _zscores(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to unit population std (constant ones to 0), overflow-safe for huge values."""
    constant = X.max(axis=0) == X.min(axis=0) if len(X) else np.ones(X.shape[1], bool)
    with np.errstate(all="ignore"):
        centred = X - X.mean(axis=0)
        scale = np.abs(centred).max(axis=0) if len(X) else np.ones(X.shape[1])
        scaled = centred / np.where(constant | (scale == 0), 1.0, scale)
        std = np.sqrt((scaled ** 2).mean(axis=0)) if len(X) else np.ones(X.shape[1])
        z = scaled / np.where(constant | (std == 0), 1.0, std)
    z = np.where(np.isfinite(z), z, 0.0)
    z[:, constant] = 0.0
    return z, constant


def _target_correlations(X: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Each column's correlation with column `t` (nan where constant), and which are constant:
    a block of columns at a time, so that the z-scores' copies stay small beside X."""
    zt, _ = _zscores(X[:, [t]])
    corr, constant = np.empty(X.shape[1]), np.empty(X.shape[1], dtype=bool)
    block = max(1, CHUNK_BYTES // 8 // max(len(X), 1))
    for a in range(0, X.shape[1], block):
        z, constant[a:a + block] = _zscores(X[:, a:a + block])
        corr[a:a + block] = np.clip(z.T @ zt[:, 0] / len(z), -1.0, 1.0)
    corr[constant] = np.nan
    return corr, constant


def numeric_part(table: Table) -> Table:
    """The columns that hold numbers only, every one finite: what correlations are computed on
    (text columns are listed instead)."""
    keep = [c for c in range(len(table.columns))
            if c not in table.text and c not in table.bad_number]
    if len(keep) == len(table.columns):
        return table
    return Table(table.path, [table.columns[c] for c in keep], table.values[:, keep], table.lines)


MAX_SHOWN_VALUES = 12  # distinct values of a text column that `dsl data` lists


def describe(table: Table, target: str | None = None) -> str:
    """The `dsl data` report: shape, per-column stats, correlation with a target column, and
    the text columns with their distinct values. Columns with NaN or infinite values show `-`
    for their statistics."""
    if target is not None:
        t = column_index(table, target)
        if t in table.text or t in table.bad_number:
            numeric_column(table, t)  # says which cell is not a finite number
    shown = [c for c in range(len(table.columns)) if c not in table.text]
    X = table.values if len(shown) == len(table.columns) else table.values[:, shown]
    with np.errstate(all="ignore"):
        stats = [X.mean(axis=0), X.std(axis=0), X.min(axis=0), X.max(axis=0)]
    finite = np.isfinite(stats[0]) & np.isfinite(stats[1])  # NaN or inf in a column reach both
    stats = [np.where(finite, v, np.nan) for v in stats]
    order = list(range(len(shown)))
    corr = None
    if target is not None:
        numbers = numeric_part(table)
        inner, constant = _target_correlations(numbers.values, numbers.columns.index(target))
        if constant[numbers.columns.index(target)]:
            inner[:] = np.nan
        corr = np.array([inner[numbers.columns.index(table.columns[c])]
                         if table.columns[c] in numbers.columns else np.nan for c in shown])
        t = shown.index(table.columns.index(target))
        rest = [i for i in order if i != t]
        rest.sort(key=lambda i: -abs(corr[i]) if np.isfinite(corr[i]) else 1.0)
        order = [t] + rest

    names = [table.columns[c] for c in shown]
    width = max([len("column")] + [len(c) for c in table.columns])
    head = f"{'column':<{width}} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}"
    corr_head = f"corr({target})"
    if target is not None:
        head += f"  {corr_head}"
    out = [f"file     {table.path}", f"rows     {len(table.values)}",
           f"columns  {len(table.columns)}"]
    if target is not None:
        out.append(f"target   {target}")
    out += ["", head]
    for i in order:
        row = f"{names[i]:<{width}}" + "".join(f" {_num(v[i]):>10}" for v in stats)
        if corr is not None:
            cell = "target" if i == order[0] else _corr(corr[i])
            row += f"  {cell:>{len(corr_head)}}"
        out.append(row)
    if table.text:
        out += ["", "text columns (a model may bind one through `onehot(NAME)`):"]
        for c, cells in table.text.items():
            values = sorted(set(cells))
            listed = ", ".join(_show(v) if v else "(empty)" for v in values[:MAX_SHOWN_VALUES])
            more = f", ... ({len(values)} distinct)" if len(values) > MAX_SHOWN_VALUES else ""
            out.append(f"{table.columns[c]:<{width}} {len(values)} distinct: {listed}{more}")
    return "\n".join(out) + "\n"


def _num(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "-"


def _corr(x: float) -> str:
    return f"{x:+.3f}" if np.isfinite(x) else "-"
