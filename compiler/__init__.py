"""The middle and back end: graph IR, symbolic derivatives, numpy code generation.

Imports only the standard library, sympy and numpy; never `dsl` when it runs (lower.py names the
front end's types in annotations only). tests/test_architecture.py holds the order of imports.
"""

# Part of the compile cache's key; bumped when fixes change generated code, so stale cached modules
# are not reused. Here, not in codegen, so that a cached command reads it without importing sympy.
CODEGEN_VERSION = "23"
