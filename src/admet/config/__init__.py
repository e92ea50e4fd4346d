"""Run configuration: loading with overrides, the legacy schema, migration."""

from admet.config.loader import (
    config_to_dict,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
    set_dotted,
)

__all__ = ["config_to_dict", "load_config", "parse_overrides", "read_yaml", "save_config", "set_dotted"]
