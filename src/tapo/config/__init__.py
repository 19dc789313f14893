"""Typed configuration: one pydantic tree, loaded from YAML plus dotted command-line overrides."""

from tapo.config.loader import ConfigError, load_config, parse_overrides
from tapo.config.schema import TapoConfig

__all__ = ["ConfigError", "TapoConfig", "load_config", "parse_overrides"]
