"""The main job: TAPO-mini data → warm start → TAPO RL and baselines → evaluation → report, resumable."""
