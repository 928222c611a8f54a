"""Real-time inference: ONNX export, the ONNX Runtime animator, and reduced-precision torch options.

* :func:`export_onnx` writes ``kp_detector.onnx``, ``source_stage.onnx`` (once per source image) and
  ``frame_stage.onnx`` (per driving frame) plus a JSON sidecar; ``fomm export-onnx`` is its CLI.
* :class:`OnnxModel` / :class:`OnnxAnimator` run those graphs with the same API as :class:`fomm.animate.Animator`
  (``fomm animate --backend onnx``).
* The torch path's speed options live on :class:`fomm.animate.Animator` (``precision``, ``channels_last``); see
  :mod:`fomm.models.fomm.precision` for what runs in reduced precision.

onnx / onnxruntime are imported only when used (``pip install 'fomm[onnx]'``).
"""

from fomm.models.fomm.precision import PRECISIONS, autocast_dtype, cpu_supports_bf16, psnr
from fomm.realtime.export import DEFAULT_OPSET, SIDECAR, export_onnx


def __getattr__(name: str):
    # The runtime imports onnxruntime lazily, but keep even its module import out of `import fomm.realtime`.
    if name in ("OnnxModel", "OnnxAnimator", "choose_providers", "load_onnx_model", "select_providers"):
        from fomm.realtime import onnx_runtime

        return getattr(onnx_runtime, name)
    raise AttributeError(name)


__all__ = ["DEFAULT_OPSET", "PRECISIONS", "SIDECAR", "OnnxAnimator", "OnnxModel", "autocast_dtype",
           "choose_providers", "cpu_supports_bf16", "export_onnx", "load_onnx_model", "psnr", "select_providers"]
