"""Source spans and the one exception family of the tool.

They live in `compiler` because IR nodes carry spans; the front end and the runtime raise the
same classes. The library only raises: `dsl.cli` renders and picks the exit status.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class DslError(Exception):
    """A user mistake: what is wrong, where (a span), and a hint when one helps."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 source_line: str | None = None, notes: tuple[tuple[str, Span], ...] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        # For files whose text the renderer cannot reread cheaply (a row of a gzipped CSV).
        self.source_line = source_line
        # Other places worth showing: the first definition of a name defined twice, a cycle's lines.
        self.notes = notes


class DslSyntaxError(DslError):
    """The text does not follow the grammar."""


class SemanticError(DslError):
    """Well-formed text that does not make a model: names, cycles, shapes, arity."""


class DataError(DslError):
    """A data file or a value given on the command line cannot feed the model."""


class DerivationError(DslError):
    """Something has no derivative we can compute or print."""


class QueryError(DslError):
    """A question about a model that the compiler cannot answer as asked: a derivative with
    respect to a name the model lacks, a form too large to write out. The compiler only says
    so; `dsl.cli` treats it as a usage mistake (exit 2), the flag that asked being wrong."""


class UsageError(DslError):
    """A bad flag or argument combination: exit status 2."""


class TrainingDiverged(DslError):
    """The loss went non-finite; the last finite parameters were kept."""


class InternalError(Exception):
    """A bug in the tool, not a user mistake: it has no span, and says so."""


@dataclass(frozen=True)
class ModelWarning:
    """A finding that does not stop the model: an unused param or node."""

    message: str
    span: Span | None
    hint: str | None = None


SUGGEST_CUTOFF = 0.5


def suggest(word: str, candidates) -> str | None:
    """The candidate most like `word` (the first given on a tie), if alike enough for a
    "did you mean" hint: difflib's ratio at least 0.5, so that a two-letter name with one
    letter wrong (`kl` for `k1`, the commonest slip in a model's short names) is offered."""
    best, score = None, SUGGEST_CUTOFF
    for c in candidates:
        r = difflib.SequenceMatcher(None, c, word).ratio()  # as difflib.get_close_matches
        if r > score or (best is None and r == score):
            best, score = c, r
    return best
