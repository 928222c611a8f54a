"""X2Face baseline (Wiles et al., ECCV 2018), weight-compatible with the original release.

Public API:
    X2FaceConfig, X2Face            -- architecture (identity model, or pose model with ``input_pose=True``)
    load_x2face, save_x2face        -- original ``{'state_dict', 'optimizer'}`` checkpoint files
    identity_grid                   -- the original's float64-linspace sampling grid
"""

from fomm.models.x2face.checkpoint import infer_config, load_x2face, save_x2face
from fomm.models.x2face.model import X2Face, X2FaceConfig, identity_grid

__all__ = ["X2Face", "X2FaceConfig", "identity_grid", "infer_config", "load_x2face", "save_x2face"]
