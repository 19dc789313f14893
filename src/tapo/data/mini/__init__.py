"""TAPO-mini: an offline fictional world (encyclopedia corpus + questions) that makes tool use measurable on a CPU."""

from tapo.data.mini.build import MiniDataset, MiniSizes, build_mini, generate_mini

__all__ = ["MiniDataset", "MiniSizes", "build_mini", "generate_mini"]
