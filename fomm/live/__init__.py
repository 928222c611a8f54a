"""``fomm live``: a photo follows a camera in real time (window, virtual camera, MJPEG stream, recording).

* :mod:`fomm.live.engine`: :class:`LiveEngine`, frame-at-a-time (calibration, photo switching, smoothing, crop);
  what ``fomm live`` and the demo's webcam tab can share.
* :mod:`fomm.live.smoothing`: the causal One-Euro keypoint filter.
* :mod:`fomm.live.crop`: centre or face-tracking crop of the camera frame.
* :mod:`fomm.live.sources`: camera (OpenCV) and paced, looping video-file input.
* :mod:`fomm.live.outputs`: window, virtual camera, MJPEG over HTTP, recording, null.
* :mod:`fomm.live.runner`: capture -> inference -> outputs threads joined by newest-wins one-slot queues, stats.
* :mod:`fomm.live.control`: commands from keys, stdin and HTTP.
* :mod:`fomm.live.worker`: ``fomm live-worker`` and the ``--remote`` client.
"""

from fomm.live.engine import LiveEngine, LiveOptions, LiveResult, Prepared, SourcePhoto, load_sources
from fomm.live.runner import LatestSlot, LiveRunner, LiveStats, RunOptions
from fomm.live.smoothing import KeypointSmoother, OneEuroConfig

__all__ = ["KeypointSmoother", "LatestSlot", "LiveEngine", "LiveOptions", "LiveResult", "LiveRunner", "LiveStats",
           "OneEuroConfig", "Prepared", "RunOptions", "SourcePhoto", "load_sources"]
