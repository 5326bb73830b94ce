"""determinism=exact: network arithmetic whose result cannot depend on the machine (mode.py)."""

from vcmbench.exact.mode import ExactArithmetic

__all__ = ["ExactArithmetic"]
