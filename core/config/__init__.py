"""The typed run config and its YAML round-trip (see schema.py)."""

from core.config.schema import (
    FIELDS,
    ConfigError,
    RunConfig,
    config_from_dict,
    config_from_yaml,
    config_to_yaml,
    field_help,
    load_config,
    save_config,
)

__all__ = ["FIELDS", "ConfigError", "RunConfig", "config_from_dict", "config_from_yaml", "config_to_yaml",
           "field_help", "load_config", "save_config"]
