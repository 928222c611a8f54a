"""The JSON records of an evaluation run and the metric names, shared by the protocol and the reports.

Kept apart so the dependency runs one way: :mod:`fomm.eval.protocol` (which computes records) imports
:mod:`fomm.eval.report` (which renders them), and both import this module, which imports neither.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fomm.io.atomic import write_text_atomic

#: The papers' metrics, in table order.
METRICS = ("l1", "akd", "mkr", "aed")
#: How each metric is written in tables and plots.
LABELS = {"l1": "L1", "akd": "AKD", "mkr": "MKR", "aed": "AED"}


def clean_json(obj):
    """JSON-safe copy: NaN/inf become null, numpy scalars and arrays become Python values."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: Path, obj) -> None:
    """``obj`` (after :func:`clean_json`) as indented JSON, written all or nothing; OutputError if unwritable."""
    write_text_atomic(path, json.dumps(clean_json(obj), indent=1, allow_nan=False) + "\n")


def read_json(path: Path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (an unfinished run's records)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
