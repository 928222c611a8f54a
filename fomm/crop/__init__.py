"""Face auto-crop for videos and photos, and paste-back of animated crops into the full photo."""

from fomm.crop.boxes import DEFAULT_INCREASE, Box, crop_and_resize, fit_box, square_box
from fomm.crop.detect import FaceDetector, find_face_box
from fomm.crop.paste import PasteBack, auto_crop_image, feather_mask, paste_back
from fomm.crop.video import CropResult, crop_video

__all__ = ["DEFAULT_INCREASE", "Box", "CropResult", "FaceDetector", "PasteBack", "auto_crop_image", "crop_and_resize",
           "crop_video", "feather_mask", "find_face_box", "fit_box", "paste_back", "square_box"]
