"""The middle and back end: graph IR, symbolic derivatives, numpy code generation.

Imports only the standard library, sympy and numpy; never `dsl`.
"""
