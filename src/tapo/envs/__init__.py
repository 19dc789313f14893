"""Environments: a task (dataset, prompt template, tools, rewards) as one object a user ships (docs/environments.md)."""

from tapo.envs.bundle import EnvError, Environment
from tapo.envs.load import load_environment

__all__ = ["EnvError", "Environment", "load_environment"]
