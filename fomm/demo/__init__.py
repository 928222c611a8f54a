"""Gradio demo (``fomm demo``; needs ``pip install 'fomm[demo]'``).

Gradio is imported only by :mod:`fomm.demo.app`, so the checks in :mod:`fomm.demo.jobs` work without it.
"""

from __future__ import annotations

from typing import Any

from fomm.demo.jobs import DemoLimits, JobOptions, JobResult, auto_crop_available, job_steps, run_job
from fomm.demo.models import (
    ModelChoice,
    ModelPool,
    checkpoint_choice,
    choices_from_file,
    default_choice,
    shipped_choices,
)


def build_app(*args: Any, **kwargs: Any):
    """See :func:`fomm.demo.app.build_app`."""
    from fomm.demo.app import build_app as _build

    return _build(*args, **kwargs)


def launch(*args: Any, **kwargs: Any):
    """See :func:`fomm.demo.app.launch`."""
    from fomm.demo.app import launch as _launch

    return _launch(*args, **kwargs)


__all__ = ["DemoLimits", "JobOptions", "JobResult", "ModelChoice", "ModelPool", "auto_crop_available", "build_app",
           "checkpoint_choice", "choices_from_file", "default_choice", "job_steps", "launch", "run_job",
           "shipped_choices"]
