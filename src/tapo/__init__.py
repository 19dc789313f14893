"""tapo: Tool-Augmented Policy Optimization (DAPO with a search engine and a Python interpreter)."""

__version__ = "0.1.0"
