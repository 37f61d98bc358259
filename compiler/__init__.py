"""The middle and back end: graph IR, symbolic derivatives, numpy code generation.

Imports only the standard library, sympy and numpy; never `dsl`.
"""

# Part of the compile cache's key; bumped when fixes change generated code, so stale cached modules
# are not reused. Here, not in codegen, so that a cached command reads it without importing sympy.
CODEGEN_VERSION = "12"
