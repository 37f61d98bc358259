"""The syntax of `.model` files, as one Lark grammar shipped as package data."""
from importlib.resources import files


def grammar_text() -> str:
    return files(__name__).joinpath("model.lark").read_text(encoding="utf-8")
