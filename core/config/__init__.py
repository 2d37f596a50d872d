"""The typed run config and its YAML round-trip (schema.py), the recipe gallery (recipes.py), the XTuner
.py import (xtuner_import.py), the equivalent commands (command.py) and the VRAM estimate (vram.py)."""

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
