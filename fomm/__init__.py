"""fomm: First Order Motion Model toolkit.

Public API (a contract other tools rely on): :func:`load_model`, :func:`normalize_kp`, :func:`load_config`,
:class:`FommConfig`, :class:`FommError`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from fomm.animate.normalize import normalize_kp
from fomm.api import LoadedModel, load_model
from fomm.config import FommConfig, bundled_configs, load_config
from fomm.errors import CheckpointError, ConfigError, FommError, InputError, OutputError

__all__ = [
    "CheckpointError", "ConfigError", "FommConfig", "FommError", "InputError", "LoadedModel", "OutputError",
    "__version__", "bundled_configs", "load_config", "load_model", "normalize_kp",
]
