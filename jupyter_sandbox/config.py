"""Operator configuration: `jupyter_sandbox_config.py` / `.json` in any Jupyter config directory."""

from __future__ import annotations

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Application, Config

CONFIG_FILE_NAME = "jupyter_sandbox_config"


def load_config(extra: Config | None = None) -> Config:
    loader = Application()
    # Later paths have lower priority in jupyter_config_path(); load_config_file expects the reverse.
    loader.load_config_file(CONFIG_FILE_NAME, path=list(reversed(jupyter_config_path())))
    config = Config(loader.config)
    if extra:
        config.merge(extra)
    return config
