"""Errors and warnings rendered as text: `file:line:col: error: ...`, the line, a caret, a hint.

The one place that turns a DslError into words; `dsl.cli` prints what it returns.
"""
from __future__ import annotations

from compiler.errors import DslError, ModelWarning, Span


def render_error(err: DslError, sources: dict[str, str]) -> str:
    return _render("error", err.message, err.span, err.hint, sources, err.source_line, err.notes)


def render_warning(w: ModelWarning, sources: dict[str, str]) -> str:
    return _render("warning", w.message, w.span, w.hint, sources, None, ())


def _render(kind, message, span, hint, sources, source_line, notes) -> str:
    if span is None:
        lines = [f"{kind}: {message}"]
    else:
        lines = [f"{span}: {kind}: {message}"]
        lines += _excerpt(span, sources, source_line)
    for note, note_span in notes:
        lines.append(f"{note_span}: note: {note}")
        lines += _excerpt(note_span, sources, None)
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def _excerpt(span: Span, sources: dict[str, str], source_line: str | None) -> list[str]:
    """The source line, indented by four, with carets under the span (on its first line)."""
    text = source_line if source_line is not None else _line(sources.get(span.file), span.line)
    if text is None:
        return []
    text = text.expandtabs(1).rstrip("\r\n")
    if len(text) > 200:  # a very long line: show the part around the span
        start = max(0, span.col - 60)
        text, col = text[start:start + 160], span.col - start
    else:
        start, col = 0, span.col
    end = span.end_col - start if span.end_line == span.line else len(text) + 1
    width = max(1, min(end, len(text) + 1) - col)
    printable = "".join(ch if ch.isprintable() else "?" for ch in text)
    return [f"    {printable}", "    " + " " * (col - 1) + "^" * width]


def _line(text: str | None, line: int) -> str | None:
    if text is None or line < 1:
        return None
    lines = text.split("\n")
    return lines[line - 1] if line <= len(lines) else None
