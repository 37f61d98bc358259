"""Text to a value built bottom up as Lark's LALR parser reduces, with syntax errors turned into
spans and plain words.

The grammar is `grammar/model.lark` (LALR). A parse hands each rule its children as Lark's tree
would hold them and the span Lark would propagate to it, but builds no tree (issue 15: the tree,
its positions and a second walk over it cost more than the parse). A text that parses touches no
Lark object (issue 15: loading Lark's parser was most of a small parse): Lark's LALR loop and
contextual lexer run inline (`_run`, `_lex`) on what they need of Lark's tables, kept as plain
data (`_Tables`). Wherever the text is wrong, Lark's own parser parses it again and raises, from
the same state, so syntax errors read as before. Building the parser's tables takes Lark ~30 ms,
so both Lark's tables and the plain ones are kept in the user's cache folder as JSON, keyed by the
grammar, Lark's version and the options: data, never code (Lark's own cache is a pickle, which
runs whatever a planted file holds), trusted as the compiled modules are (the user's own, that no
one else can write: other tables would parse a model into another one), and rebuilt if they do
not load. The parse is iterative, but the walks over the AST after it are recursive, so
expressions nested deeper than `MAX_DEPTH` are refused here with a hint, before anything recurses.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import operator
import os
import re
from functools import lru_cache
from typing import Callable

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.grammar import Rule
from lark.lexer import BasicLexer, PatternStr, TerminalDef, UnlessCallback
from lark.parsers.lalr_analysis import Shift

from compiler.errors import DslSyntaxError, Span, suggest
from dsl.front.files import atomic_write, cache_dir, trusted
from grammar import grammar_text

MAX_DEPTH = 200

# Terminals with a pattern rather than a fixed string, as a user would say them.
_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT": "a whole number", "STRING": 'a "quoted path"',
    "_NL": "the end of the line", "$END": "the end of the file", "POW": "`^`",
}

# Labelled mistakes (Lark's match_examples): the first example that fails the same way names it.
_EXAMPLES = {
    "this expression is incomplete": ["x = 1 +\n", "x = 2 *\n", "x = (\n", "x = exp(\n", "x =\n",
                                      "x = 1 -\n", "x = 1 /\n", "x = 1 @\n", "x = 1 ^\n", "x = -\n"],
    "missing `)`": ["x = (1 + 2\n", "x = exp(1\n", "x = f(a, b\n"],
    "unbalanced `)`": ["x = 1)\n", "x = (1))\n"],
    "two values with no operator between them": ["x = a b\n", "x = 2 3\n", "x = a (b)\n"],
    "a statement starts with a keyword (input, param, const, def, minimize, predict, target, report, "
    "data, train) "
    "or with `NAME =`": ["x\n", "1 = x\n", "x + 1\n", "inpt x\n"],
    "unclosed `train {` block": ["train {\n batch 1\n", "train {\n", "train {\n batch 1\n seed 1\n"],
    "unknown setting in `train { }`": ["train {\n foo 1\n}\n", "train {\n lr 0.1\n}\n",
                                       "train {\n batch 1\n foo 1\n}\n",
                                       "train {\n batch 1\n seed 1\n foo 1\n}\n"],
    "comparisons do not chain": [f"x = a {op} b < c\n" for op in ("==", "!=", "<", "<=", ">", ">=")],
    "a dimension list looks like `[N, 13]`": ["input x[N 13]\n", "input x[]\n", "param w[2.5] = 0\n"],
    "`param` needs `~ distribution` or `= number`": ["param w\n", "param w[2]\n", "param w = x\n"],
}

_HINTS = {
    "comparisons do not chain": "`a < b < c` is not `a < b and b < c`: write "
                                "`(a < b) * (b < c)`, which is 1 where both hold",
    "this expression is incomplete": "an operator needs a value on both sides",
    "missing `)`": "every `(` needs a matching `)`; inside brackets a statement may go on over "
                   "several lines",
    "unbalanced `)`": "remove the extra `)` or add the `(` it closes",
    "two values with no operator between them": "write `a * b` for a product; juxtaposition is not multiplication",
    "a dimension list looks like `[N, 13]`": "dims are whole numbers or size names, separated by commas",
    "`param` needs `~ distribution` or `= number`":
        "for example `param W[13, 10] ~ normal(0, 1)` or `param b[10] = 0`",
    "unknown setting in `train { }`":
        "settings: optimizer, batch, epochs, steps, seed, dtype, log every",
}


_KEYWORD_AS_NAME = re.compile(
    r"^\s*(input|param|const|def|minimize|predict|target|report|data|train)\s*(=|\[)")


_OPTIONS = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True)
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB"}
_ASSIGNMENT_START = re.compile(r"^\s*[A-Za-z_]\w*\s*=(?!=)")


class _Continuation:
    """Line continuation: a newline inside `( )` or `[ ]` continues the statement (the Lark
    postlexer drops it; `_lex` does the same in its loop). Tokens keep their own positions, so
    error spans stay exact; a bracket left open is found by `_swallowed_statement`."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if depth:
                    continue
            elif kind in _OPENERS:
                depth += 1
            elif kind in _CLOSERS and depth:
                depth -= 1
            yield tok


_CONTINUATION = _Continuation()
_CLOSERS = frozenset(_OPENERS.values())


class _Unparsed(Exception):
    """The text is not one the tables parse (no terminal matches, or a token the state does not
    accept): Lark parses it again, to say what is wrong."""


_ROOT_USES = 2000  # a union's compile (0.2-0.3 ms) in the root union's slower matches (+0.12-0.15 us)


class _Lexer:
    """The lexer of the parser states that accept the same terminals, as Lark's contextual lexer
    builds it: the union regex of those terminals in Lark's order (the first alternative that
    matches wins), and the keywords a NAME becomes by its text. Its regex is compiled only where
    needed (issue 15: compiling one per state was most of a small parse). Where the union of all
    terminals (`_Tables.root`) finds one of this lexer's terminals, and each terminal this
    lexer has before it is in the root union too (`decided`), this union finds the same: those
    before it failed there. It is compiled where the root union does not decide, or after
    `_ROOT_USES` tokens (it matches faster, being smaller: a big model pays the compile back)."""

    __slots__ = ("source", "keywords", "decided", "pattern", "root_uses")

    def __init__(self, source: str, keywords: dict, decided: list):
        self.source, self.keywords, self.decided = source, keywords, frozenset(decided)
        self.pattern, self.root_uses = None, _ROOT_USES

    def compile(self) -> re.Pattern:
        self.pattern = re.compile(self.source)
        return self.pattern


class _Tables:
    """What a successful parse needs of Lark's parser, as plain data (issue 15: loading Lark's
    own objects from their cached tables was most of a small parse): the LALR action table
    (per state, a symbol's next state, or ~index of the rule to reduce), each rule's shape
    (`_rule_shape`), the gotos that pass through rules that pass their child on (`_chains`),
    the start and end states, the union regex of all terminals and each
    state's `_Lexer`, and the terminals that are ignored or may hold a newline."""

    def __init__(self, data: dict):
        self.states = data["states"]
        self.rules = data["rules"]
        self.chains = data["chains"]
        self.start, self.end = data["start"], data["end"]
        self.root = data["root"]
        lexers = [_Lexer(*lexer) for lexer in data["lexers"]]
        self.lexers = [lexers[i] for i in data["lexer_of_state"]]
        self.ignore, self.newline = frozenset(data["ignore"]), frozenset(data["newline"])


_TABLES_FORMAT = 4  # bumped when `_Tables`' data changes


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    """The parse tables, from the cache folder when they load, else taken from Lark's parser
    (and cached): kept and trusted as Lark's own tables are (`_lark`)."""
    key = _key(str(_TABLES_FORMAT))
    path = os.path.join(cache_dir(), f"lalr.{key[:24]}.json")
    usable = trusted(os.path.dirname(path), [], folder=True)
    if usable and trusted(path, []):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data["key"] == key:
                return _Tables(data)
        except Exception:  # noqa: BLE001 -- absent or damaged: taken from Lark again
            pass
    data = _table_data(_lark(), key)
    if usable:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            atomic_write(path, json.dumps(data).encode("utf-8"), private=True)
        except OSError:  # best effort, as for compiled modules
            pass
    return _Tables(data)


def _table_data(parser: Lark, key: str) -> dict:
    """`_Tables`' data, read off Lark's parser: its LALR table and its contextual lexer's
    per-state lexers, built as Lark builds them."""
    conf = parser.parse_interactive("").parser_state.parse_conf
    assert sorted(conf.states) == list(range(len(conf.states)))
    rules: dict[Rule, int] = {}
    states = []
    for state in range(len(conf.states)):
        actions = {}
        for kind, (action, arg) in conf.states[state].items():
            actions[kind] = arg if action is Shift else ~rules.setdefault(arg, len(rules))
        states.append(actions)
    contextual = parser.parser.lexer.lexer
    skip = _blanks(parser)
    root, root_terminals = _scanner(contextual.root_lexer)
    lexers: dict[str, int] = {}  # by their data: states that accept other terminals may lex alike
    lexer_of_state = []
    for state in range(len(states)):
        lexer = contextual.lexers[state]
        source, terminals = _scanner(lexer)
        decided = list(itertools.takewhile(set(root_terminals).__contains__, terminals))
        data = json.dumps([f"{skip}(?:{source})", _keywords(lexer), decided])
        lexer_of_state.append(lexers.setdefault(data, len(lexers)))
    shapes = [_rule_shape(rule) for rule in rules]
    return {"key": key, "states": states, "rules": shapes, "chains": _chains(states, shapes),
            "start": conf.start_state, "end": conf.end_state, "root": f"{skip}(?:{root})",
            "lexers": [json.loads(data) for data in lexers], "lexer_of_state": lexer_of_state,
            "ignore": sorted(contextual.root_lexer.ignore_types),
            "newline": sorted(contextual.root_lexer.newline_types)}


def _chains(states: list[dict], shapes: list[tuple]) -> list[dict]:
    """Per state, the gotos on a rule's origin that go on through rules that only pass their
    child through (`?product: unary`, which `_rule_shape` calls "same"), by the next token's
    kind: (origin, {kind: the state after the last such rule}), where any does. Issue 15: an
    operand of `a * b + c` went through four of them, each a turn of the LALR loop; the state
    under the goto's stays on the stack, so the goto it makes for the rule reduced next, given
    the same next token, is known in advance."""
    origins = {shape[0] for shape in shapes}
    kinds = {kind for actions in states for kind in actions if kind not in origins}
    chains = []
    for actions in states:
        chain = {}
        for origin, goto in actions.items():
            if origin not in origins:
                continue
            for kind in kinds:
                state = goto
                while True:
                    action = states[state].get(kind)
                    if action is None or action >= 0 or shapes[~action][2] != "same":
                        break
                    state = actions[shapes[~action][0]]
                if state != goto:
                    chain.setdefault(origin, {})[kind] = state
        chains.append(chain)
    return chains


def _blanks(parser: Lark) -> str:
    """A regex for the blanks before a token, skipped in the token's own match (issue 15: a
    match of its own for the blank after most tokens was a third of the lexer's matches). It is
    `WS` (ignored) where it starts with a space, tab or form feed: there no other terminal
    starts, and `WS` takes the whole run, as Lark's lexer does; not at a `\\r`, which `_NL`
    (before `WS` in the union) may take. Possessive: a token that does not follow is no token
    the blanks hide."""
    ws = parser.get_terminal("WS").pattern.to_regexp()
    assert "WS" in parser.lexer_conf.ignore and not re.match(ws, "\n"), ws
    return f"(?:(?=[\\t \\f])(?:{ws}))?+"


def _scanner(lexer: BasicLexer) -> tuple[str, list[str]]:
    """The union regex of a lexer of Lark's (its `Scanner`, one regex since Python lifted its
    limit of 100 groups) and its terminals, in order."""
    scanner = lexer.scanner
    (pattern,) = scanner._mres
    assert pattern.flags == re.UNICODE, pattern.flags
    return pattern.pattern, [t.name for t in scanner.terminals]


def _keywords(lexer: BasicLexer) -> dict[str, dict[str, str]]:
    """A lexer's keywords: the strings a regex terminal's `UnlessCallback` retypes it to (all
    plain), by that terminal."""
    keywords = {}
    for kind, callback in lexer.callback.items():
        assert isinstance(callback, UnlessCallback), kind
        words = callback.scanner.terminals
        assert all(isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in words)
        keywords[kind] = {t.pattern.value: t.name for t in words}
    return keywords


_TOKEN, _VALUE, _SPLICE = range(3)


def _rule_shape(rule: Rule) -> tuple:
    """What a reduction of `rule` does, as plain data: (origin, length of its expansion, how,
    name, kept, trailing). `how`: "same" passes its one child through (`?sum: product`),
    "token" makes its one token the value (`?dim: INT`), "inline" splices its children into
    its parent's (`_rule`), "node" calls the builder's method `name`, "expand1" too unless one
    child is left (`?atom: "(" expr ")"`). `kept`: its children as Lark's ChildFilter keeps
    them, (index in the expansion, kind, Nones before it) for each kept symbol; `trailing`:
    the Nones after the last."""
    assert not rule.options.keep_all_tokens, rule
    name = rule.alias or rule.origin.name
    expand1 = rule.options.expand1 and not rule.alias
    if expand1 and len(rule.expansion) == 1:
        how = "token" if rule.expansion[0].is_term else "same"
    else:
        how = "inline" if name.startswith("_") else "expand1" if expand1 else "node"
    empty = rule.options.empty_indices or [False] * len(rule.expansion)
    nones = [len(run) for run in "".join(str(int(b)) for b in empty).split("0")]
    kept, before = [], 0
    for i, sym in enumerate(rule.expansion):
        before += nones[i]
        if sym.is_term and sym.filter_out:
            continue
        kind = _TOKEN if sym.is_term else _SPLICE if sym.name.startswith("_") else _VALUE
        kept.append((i, kind, before))
        before = 0
    return rule.origin.name, len(rule.expansion), how, name, kept, before + nones[-1]


def _key(*more: str) -> str:
    """The cache key of the parser's tables: Lark's version, the options and the grammar."""
    text = "\0".join((lark.__version__, str(sorted(_OPTIONS.items())), grammar_text(), *more))
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """Lark's parser, to say why a text is wrong and to take `_tables` from: from its cached
    tables when they load, else built (and its tables cached)."""
    text = grammar_text()
    key = _key()
    path = os.path.join(cache_dir(), f"parser.{key[:24]}.json")
    usable = trusted(os.path.dirname(path), [], folder=True)  # the compile cache says why not
    if usable and trusted(path, []):
        try:
            with open(path, encoding="utf-8") as f:
                tables = json.load(f, object_pairs_hook=_int_keys)
            return Lark._load_from_dict(tables["data"], tables["memo"], postlex=_CONTINUATION)
        except Exception:  # noqa: BLE001 -- absent, damaged or from another Lark: build it again
            pass
    parser = Lark(text, postlex=_CONTINUATION, **_OPTIONS)
    if usable:  # objects, not data: given again when the tables load
        parser.options.postlex = None
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        tables = json.dumps({"data": data, "memo": memo}).encode("utf-8")
        parser.options.postlex = _CONTINUATION
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            atomic_write(path, tables, private=True)
        except OSError:  # best effort, as for compiled modules
            pass
    return parser


def _int_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON has only string keys; Lark's tables number their states and memo entries (its own
    keys otherwise are names and options, never all digits)."""
    return {int(k) if k.isdigit() else k: v for k, v in pairs}


def parse(text: str, file: str, builder: object):
    """Parse model text into what `builder`'s methods make of it; raise DslSyntaxError with a
    span for any malformed input.

    The method named after a rule (its alias if it has one) gets the rule's span and its
    children, already built, as `Lark(maybe_placeholders=True)` would put them in its tree
    (tokens, None for an absent optional part). A mistake a method raises is held until the
    whole text has parsed, so that a syntax error anywhere, and then too deep a nesting, is
    reported first, as a tree walked after the parse would."""
    source = text if text.endswith("\n") else text + "\n"
    mistakes: list[DslSyntaxError] = []
    tables = _tables()
    try:
        root = _run(tables, source, _callbacks(tables, builder, file, mistakes))
    except _Unparsed:
        try:
            _lark().parse(source)
        except UnexpectedInput as e:
            raise _syntax_error(e, source, file) from None
        raise AssertionError("Lark parses a text its own tables refuse") from None
    if root.height > MAX_DEPTH:  # rare: find the node to point at in Lark's own tree
        _check_depth(_lark().parse(source), file)
    if mistakes:
        raise mistakes[0]
    return root.value


def _run(tables: _Tables, source: str, callbacks: list[tuple]) -> _Reduced:
    """Lark's LALR loop (`ParserState.feed_token`) on its table as plain data, its work per
    token inline (issue 15: Lark's method calls per token were a fifth of a parse), fed by
    `_lex`; a rule that passes its one child through (`?sum: product`) is never reduced: the
    goto to its child goes on to the state after it (`_chains`). Raises _Unparsed where the
    table has no action."""
    states, chains, end = tables.states, tables.chains, tables.end
    stack, values = [tables.start], []
    for token in _lex(tables, source, stack):
        kind = token[0]
        while True:
            action = states[stack[-1]].get(kind)
            if action is None:
                raise _Unparsed
            if action >= 0:
                stack.append(action)
                values.append(token)
                break
            size, origin, callback = callbacks[~action]
            if size:
                value = callback(values[-size:])
                del stack[-size:]
                del values[-size:]
                values.append(value)
            else:
                values.append(callback([]))
            below = stack[-1]
            state = states[below][origin]
            chain = chains[below].get(origin)
            if chain is not None:
                state = chain.get(kind, state)
            if state == end:  # `start` reduced, at the end of the text
                return values[-1]
            stack.append(state)
    raise AssertionError("the text ended before its end")


def _lex(tables: _Tables, text: str, stack: list):
    """Lark's contextual lexer: the tokens of `text`, each lexed by the `_Lexer` of the parser
    state on top of `stack`; the same matches, tokens, positions and keywords (Lark's
    `BasicLexer.next_token` and `LineCounter.feed`), and the line continuation's (`_Continuation`,
    in this loop: issue 15, a generator of its own cost a twentieth of a parse). Raises _Unparsed
    where nothing matches."""
    lexers, ignore, newline = tables.lexers, tables.ignore, tables.newline
    root = re.compile(tables.root).match  # compiled once, then from re's own cache
    end, pos, line, line_start, depth = len(text), 0, 1, 0, 0  # depth: brackets open
    while pos < end:
        lexer = lexers[stack[-1]]
        if lexer.pattern:  # compiled already: one match
            m = lexer.pattern.match(text, pos)
        else:
            m = root(text, pos)
            lexer.root_uses -= 1
            if m is None or m.lastgroup not in lexer.decided or not lexer.root_uses:
                m = lexer.compile().match(text, pos)
        if m is None:
            raise _Unparsed
        kind = m.lastgroup
        start, pos = m.span(kind)  # after the blanks `_blanks` skipped
        value, start_line, column = text[start:pos], line, start - line_start + 1
        if kind in newline:
            n = value.count("\n")
            if n:
                line += n
                line_start = start + value.rindex("\n") + 1
        if kind in ignore:
            continue
        if kind in lexer.keywords:
            kind = lexer.keywords[kind].get(value, kind)
        if kind == "_NL":
            if depth:
                continue
        elif kind in _OPENERS:
            depth += 1
        elif kind in _CLOSERS and depth:
            depth -= 1
        yield _Token((kind, value, start_line, column, line, pos - line_start + 1, start, pos))
    yield _Token(("$END", "", line, 1, line, 1, pos, pos))  # Lark's parse says where a text is wrong


class _Token(tuple):
    """A token as Lark's lexer makes it, read as the builder read Lark's `Token` (`str`, `int`,
    `float`, `.type`, `.line`...), but a tuple: made in one call (issue 15: a Lark `Token` is
    a `str` whose eight attributes a method sets one by one). Its place is at 2-5, as a
    `_Reduced`'s, so that a rule reads its first and last symbols' alike."""

    __slots__ = ()

    type, value, line, column, end_line, end_column, start_pos, end_pos = (
        property(operator.itemgetter(i)) for i in range(8))

    def __str__(self) -> str:
        return self[1]

    def __int__(self) -> int:
        return int(self[1])

    def __float__(self) -> float:
        return float(self[1])


class _Reduced(tuple):
    """A rule's result on the LALR value stack: (its height as a node of Lark's tree, its
    value, line, column, end line, end column), the text it covers as Lark's positions would
    have it: from its first symbol's start to its last's end (a token, or a rule's covered
    text: both hold their place at 2-5), brackets included where `?atom: "(" expr ")"` passed
    `expr` through (the `container` positions of `propagate_positions`). A tuple: made in one
    call, not by an `__init__` that sets six attributes (issue 15: one per rule reduced)."""

    __slots__ = ()

    height, value = property(operator.itemgetter(0)), property(operator.itemgetter(1))


def _callbacks(tables: _Tables, builder: object, file: str, mistakes: list) -> list[tuple]:
    """Each rule's reduction, by its index in the table: (length of its expansion, origin,
    callback building with `builder` (see `parse`); none for a rule that passes its child
    through, which `_run` does not reduce)."""
    callbacks = []
    for origin, size, how, name, kept, trailing in tables.rules:
        if how == "same":
            call = None
        elif how == "token":
            call = _token
        elif how == "inline":
            call = _inliner(kept, trailing)
        else:  # a `?rule` left with one child needs no method (`?atom: "(" expr ")"`)
            expand1 = how == "expand1"
            method = getattr(builder, name, None) if expand1 else getattr(builder, name)
            call = _reducer(kept, trailing, method, file, mistakes, expand1)
        callbacks.append((size, origin, call))
    return callbacks


def _children(s: list, kept: tuple, trailing: int) -> tuple[list, int]:
    """The children Lark's tree would hold (`_rule`s spliced in) and the highest's height."""
    children, height = [], 0
    for i, kind, nones in kept:
        if nones:
            children += [None] * nones
        item = s[i]
        if kind is _TOKEN:
            children.append(item)
            continue
        if item[0] > height:  # a `_Reduced`: (height, value, ...)
            height = item[0]
        if kind is _VALUE:
            children.append(item[1])
        elif children:
            children += item[1]
        else:  # a left-recursive `_rule`'s list grows in place, as in Lark's LALR ChildFilter
            children = item[1]
    if trailing:
        children += [None] * trailing
    return children, height


def _inliner(kept: tuple, trailing: int) -> Callable:
    """A `_rule`: its children, spliced into its parent's."""
    def inline(s):
        children, height = _children(s, kept, trailing)
        first, last = s[0], s[-1]
        return _Reduced((height, children, first[2], first[3], last[4], last[5]))
    return inline


def _reducer(kept: tuple, trailing: int, method: Callable, file: str, mistakes: list,
             expand1: bool) -> Callable:
    """A rule that makes a node of Lark's tree: `method(span, children)`; or, for a `?rule` with
    one child left (`"(" expr ")"`), that child, covering the whole rule."""
    def reduce(s):
        children, height = _children(s, kept, trailing)
        if not s:  # only `start`, of a text with no statements
            return _Reduced((1, method(None, children), None, None, None, None))
        first, last = s[0], s[-1]
        if expand1 and len(children) == 1:  # a token keeps its own place, as in Lark
            child = children[0]
            return (_token([child]) if isinstance(child, _Token) else
                    _Reduced((height, child, first[2], first[3], last[4], last[5])))
        if mistakes:  # a mistake is held: only the parse goes on (its children may be missing)
            return _Reduced((height + 1, None, first[2], first[3], last[4], last[5]))
        try:
            value = method(Span(file, first[2], first[3], last[4], last[5]), children)
        except DslSyntaxError as e:
            mistakes.append(e)
            value = None
        return _Reduced((height + 1, value, first[2], first[3], last[4], last[5]))
    return reduce


def _token(s: list) -> _Reduced:
    """A token that stands for a rule (`?dim: INT`): not a node of Lark's tree."""
    token = s[0]
    return _Reduced((0, token, token[2], token[3], token[4], token[5]))


def _syntax_error(e: UnexpectedInput, source: str, file: str, cut: bool = False) -> DslSyntaxError:
    """The error for a failed parse. `cut`: `source` is the text before a statement that an
    open bracket swallowed, so its end is the end of a line, not of the file."""
    line, col = _position(e, source)
    keyword = _KEYWORD_AS_NAME.match(source.split("\n")[line - 1])
    if keyword:
        start = keyword.start(1) + 1
        return DslSyntaxError(f"`{keyword.group(1)}` is a keyword and cannot be a name",
                              Span(file, line, start, line, start + len(keyword.group(1))),
                              "choose another name, e.g. `" + keyword.group(1) + "_`")
    unknown = _unknown_keyword(source.split("\n")[line - 1], col)
    if unknown:
        word, start, close = unknown
        return DslSyntaxError(f"unknown keyword `{word}`", Span(file, line, start, line,
                                                                 start + len(word)),
                              f"did you mean `{close}`?")
    swallowed = _swallowed_statement(e, source)
    if swallowed is not None:  # parse up to it: the same message as without continuation
        before = "\n".join(source.split("\n")[:swallowed - 1]) + "\n"
        try:
            _lark().parse(before)
        except UnexpectedInput as inner:
            return _syntax_error(inner, before, file, cut=True)
    end = "the end of the line" if cut else "the end of the file"
    at_end = isinstance(e, UnexpectedToken) and e.token.type == "$END"
    opened = _open_brackets(source, len(source.split("\n")) + 1) if at_end else []
    if opened and _accepts(e, "RPAR" if opened[-1][2] == "(" else "RSQB"):
        bline, bcol, bracket = opened[-1]
        closer = ")" if bracket == "(" else "]"
        return DslSyntaxError(f"missing `{closer}` (found {end})", Span(file, line, col, line, col + 1),
                              _HINTS["missing `)`"].replace("(", bracket).replace(")", closer),
                              notes=((f"the `{bracket}` opened here",
                                      Span(file, bline, bcol, bline, bcol + 1)),))
    label = None
    if not isinstance(e, UnexpectedCharacters):
        label = _match_label(e)
    width = 1
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        found = _describe_token(e.token)
        width = max(1, len(str(e.token).split("\n")[0]))
    elif isinstance(e, UnexpectedCharacters):
        ch = source[e.pos_in_stream] if e.pos_in_stream < len(source) else ""
        found = f"character {ch!r}" if ch.isprintable() else f"character {ch!r} (not printable)"
    else:
        found = end
    if label:
        message = f"{label} (found {found})"
    else:
        message = f"unexpected {found.removeprefix('the ')}"
    hint = _HINTS.get(label) if label else None
    if hint is None:
        expected = sorted(getattr(e, "accepts", None) or getattr(e, "expected", None) or ())
        words = [_expected_word(t) for t in expected]
        if words:
            hint = "expected " + ", ".join(dict.fromkeys(words))
    return DslSyntaxError(message, Span(file, line, col, line, col + width), hint)


_STATEMENT_KEYWORDS = ("input", "param", "const", "def", "minimize", "predict", "data", "train")
_FIRST_WORD = re.compile(r"\s*([A-Za-z_]\w*)\s+[^\s=]")


def _unknown_keyword(text: str, col: int) -> tuple[str, int, str] | None:
    """`parm W ...`: a first word followed by another (not by `=`) and close to a statement
    keyword, when the error lies after it; its start column and the keyword."""
    m = _FIRST_WORD.match(text)
    if m is None or col <= m.end(1) or m.group(1) in _STATEMENT_KEYWORDS:
        return None
    close = suggest(m.group(1), _STATEMENT_KEYWORDS)
    return (m.group(1), m.start(1) + 1, close) if close else None


def _accepts(e: UnexpectedInput, terminal: str) -> bool:
    return terminal in (getattr(e, "accepts", None) or getattr(e, "expected", None) or ())


def _swallowed_statement(e: UnexpectedInput, source: str) -> int | None:
    """The line of a statement that an unclosed bracket above it swallowed: a line that starts
    with a statement keyword (never part of an expression) at or before the failure, or the
    failure at the `NAME =` that starts its line, with a bracket open from an earlier line."""
    token = getattr(e, "token", None)
    if token is None or token.type == "$END" or isinstance(e, UnexpectedCharacters):
        return None
    lines = source.split("\n")
    start = _ASSIGNMENT_START.match(lines[token.line - 1])
    candidates = [n for n in range(2, token.line + 1)
                  if lines[n - 1].split(maxsplit=1)[:1] and
                  lines[n - 1].split(maxsplit=1)[0] in _STATEMENT_KEYWORDS]
    if start and token.column <= start.end():
        candidates.append(token.line)
    wanted = set(candidates)
    for n, opened in enumerate(_bracket_stacks(source, token.line), start=1):
        if n in wanted and opened:  # one pass: a call per candidate took minutes on big models
            return n
    return None


def _open_brackets(source: str, before_line: int) -> list[tuple[int, int, str]]:
    """The brackets still open at the start of `before_line` (line, column, bracket), skipping
    comments and quoted paths."""
    *_, opened = _bracket_stacks(source, before_line)
    return opened


def _bracket_stacks(source: str, last_line: int):
    """The brackets open at the start of each line up to `last_line` (one list, updated)."""
    stack: list[tuple[int, int, str]] = []
    yield stack
    for n, text in enumerate(source.split("\n")[:last_line - 1], start=1):
        quoted = False
        for col, ch in enumerate(text, start=1):
            if ch == '"':
                quoted = not quoted
            elif quoted:
                continue
            elif ch == "#":
                break
            elif ch in "([":
                stack.append((n, col, ch))
            elif ch in ")]" and stack:
                stack.pop()
        yield stack


def _match_label(e: UnexpectedInput) -> str | None:
    """Lark's `match_examples`, but comparing only the LALR state on top of the stack (and the
    accepted tokens): Lark 1.x also compares the stack's depth, so a one-line example never
    matched a mistake after the first statement or inside parentheses."""
    top = getattr(getattr(e, "state", None), "position", None)
    if top is None:
        return None
    token = getattr(e, "token", None)
    same_type, candidate = None, None
    for label, examples in _EXAMPLES.items():
        for example in examples:
            try:
                _lark().parse(example)
            except UnexpectedInput as ut:
                if getattr(getattr(ut, "state", None), "position", None) != top:
                    continue
                if (isinstance(e, UnexpectedToken) and isinstance(ut, UnexpectedToken)
                        and ut.accepts != e.accepts):
                    continue
                found = getattr(ut, "token", None)
                if found == token:
                    return label
                if found is not None and token is not None and found.type == token.type:
                    same_type = same_type or label
                candidate = candidate or label
    return same_type or candidate


def _expected_word(terminal: str) -> str:
    if terminal in _TOKEN_WORDS:
        return _TOKEN_WORDS[terminal]
    pattern = _lark().get_terminal(terminal).pattern
    return f"`{pattern.value}`"


def _describe_token(tok: Token) -> str:
    if tok.type == "_NL":
        return "the end of the line"
    return f"`{tok}`"


def _position(e: UnexpectedInput, source: str) -> tuple[int, int]:
    """1-based line and column; Lark reports -1 at the end of the text."""
    token = getattr(e, "token", None)
    if isinstance(e, UnexpectedEOF) or getattr(e, "line", -1) in (-1, None) or (
            token is not None and token.type == "$END"):
        lines = [ln.split("#")[0].rstrip() for ln in source.split("\n")]
        last = max([n for n, ln in enumerate(lines, start=1) if ln], default=1)
        return last, len(lines[last - 1]) + 1
    if isinstance(e, UnexpectedToken) and e.token.type == "_NL":
        # A newline token starts at the end of the previous line: point just after its text.
        line = e.token.line
        text = source.split("\n")[line - 1]
        return line, len(text.split("#")[0].rstrip()) + 1
    return e.line, e.column


def _check_depth(tree: Tree, file: str) -> None:
    """Refuse trees deeper than MAX_DEPTH, iteratively (the walks after this recurse)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            raise DslSyntaxError(
                f"expression nested more than {MAX_DEPTH} levels deep",
                Span(file, meta.line, meta.column, meta.line, meta.column + 1),
                "split it into several statements, one node per line")
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
