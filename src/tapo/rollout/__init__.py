"""The multi-turn agent loop: generation interleaved with tool calls, producing trajectories."""
