"""The front end: a `.model` file's text to a checked model, before any maths is derived.

parser (the Lark grammar, its tables cached) -> build (parse tree to the dataclasses of ast)
-> check (names, definitions, order, shapes: a `Checked` model). diagnostics renders every
error and warning with file:line:col and a caret; files reads sources safely and owns the
cache folder. Reads only grammar/ and compiler.errors (and the op registry) below it."""
