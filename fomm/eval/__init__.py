"""Evaluation: the papers' reconstruction protocol, metrics (L1, AKD, MKR, AED), detector backends and reports.

Model-agnostic: a model enters only as a :data:`~fomm.eval.protocol.Reconstructor` callable.
Detector backends (dlib, mediapipe, face-alignment) are imported lazily, only when a suite needs them.
"""

from fomm.eval.protocol import (
    MetricSuite,
    Reconstructor,
    copy_source_reconstructor,
    evaluate_reconstruction,
    generate,
    make_suite,
    score,
)
from fomm.eval.report import compare, write_reports

__all__ = [
    "MetricSuite",
    "Reconstructor",
    "compare",
    "copy_source_reconstructor",
    "evaluate_reconstruction",
    "generate",
    "make_suite",
    "score",
    "write_reports",
]
