"""Views: what a person reads about a model, built from the compiler's data, never computing it.

explain (derivations as text, LaTeX, JSON and notebook maths), graphview (the graph as text or
DOT), plots (PNG figures of data and fits, when matplotlib is installed)."""
