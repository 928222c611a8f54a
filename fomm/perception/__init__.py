"""Perception backends shared by several tools: face landmarks, face identity embeddings and body pose.

They are third-party detectors (dlib, face-alignment, mediapipe) behind small protocols. Evaluation scores with them
(AKD, AED, MKR) and the animation engine picks ``--find-best-frame`` with them, so they sit below both rather than
inside ``fomm.eval`` (where the engine could not import them without reaching up a layer).
"""
