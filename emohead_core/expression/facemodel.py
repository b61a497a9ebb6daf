"""``FaceModel``: face detection (FaceBoxes) + 3DDFA_V2 regression + 68 landmarks on images.

    fm = FaceModel("resources/assets/3ddfa_v2", onnx_dir="resources/onnx")
    faces = fm(bgr_uint8)          # list[Face], best detection first
    faces[0].box, faces[0].params, faces[0].landmarks   # (5,), (62,), (68, 3)

Each face is fitted in two passes as in upstream 3DDFA_V2's video demo: the ROI derived from
the face box gives first landmarks, whose ROI gives the final parameters. The same second
pass is what tracking uses on frames without detection (ROI from the previous landmarks), so
detecting every frame and detecting every k frames see the same kind of crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EmoheadInputError
from ..io import sha256_file
from . import tddfa as T
from .plan import onnx_name
from .runtime import OnnxRegressor, TorchRegressor, export_onnx, onnx_providers

PARAM_STATS_FILE = "param_mean_std_62d_120x120.pkl"
BFM68_FILE = "bfm_68_landmarks.npz"
BFM_FULL_FILE = "bfm_noneck_v3.pkl"
FACEBOXES_ONNX = "faceboxes.onnx"
FACEBOXES_PTH = "FaceBoxesProd.pth"


def widen_from_name(checkpoint: str) -> float:
    """mb05_* -> 0.5, mb1_* -> 1.0 (upstream file names)."""
    stem = Path(checkpoint).name
    if stem.startswith("mb05"):
        return 0.5
    if stem.startswith("mb1"):
        return 1.0
    raise EmoheadInputError(
        f"cannot infer the widen factor of {stem}.",
        path=checkpoint,
        fix="set expression.widen_factor (0.5 or 1.0).",
    )


@dataclass
class Face:
    box: np.ndarray  # (5,) x1, y1, x2, y2, score
    roi_box: np.ndarray  # (4,) crop box of the final parameters
    params: np.ndarray  # (62,)
    landmarks: np.ndarray  # (68, 3) image coordinates
    pose_info: dict = field(default_factory=dict)

    @property
    def pose(self) -> np.ndarray:
        return self.params[:12]

    @property
    def shape(self) -> np.ndarray:
        return self.params[12:52]

    @property
    def exp(self) -> np.ndarray:
        return self.params[52:62]

    @property
    def mar(self) -> float:
        return float(T.mouth_aspect_ratio(self.landmarks))


class FaceModel:
    """Detector + 3DDFA_V2 regressor loaded from an assets directory.

    assets_dir holds ``mb05_120x120.pth`` (or ``checkpoint``), ``param_mean_std_62d_120x120.pkl``,
    ``bfm_68_landmarks.npz`` (``bfm=`` may name upstream's ``bfm_noneck_v3.pkl`` instead) and
    ``FaceBoxesProd.pth``. ONNX files (``3ddfa_mb05.onnx``, ``faceboxes.onnx``) are looked up in
    ``onnx_dir`` (default: ``assets_dir``) and exported there once when missing.
    ``backend="torch"`` runs the PyTorch module instead of onnxruntime. ``detector`` may be any
    object with ``detect(bgr) -> (N, 5)`` sorted by score (default: FaceBoxes).
    """

    def __init__(
        self,
        assets_dir: str | os.PathLike,
        *,
        onnx_dir: str | os.PathLike | None = None,
        checkpoint: str = "mb05_120x120.pth",
        widen_factor: float | None = None,
        backend: str = "onnx",
        device: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
        detector=None,
        detect_threshold: float = 0.5,
        bfm: str | None = None,
    ):
        self.assets_dir = Path(assets_dir)
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else self.assets_dir
        self.checkpoint_path = self.assets_dir / checkpoint
        self.widen_factor = float(widen_factor) if widen_factor is not None else widen_from_name(checkpoint)
        self.stats = T.load_param_stats(self.assets_dir / PARAM_STATS_FILE)
        bfm_path = Path(bfm) if bfm else self.assets_dir / BFM68_FILE
        self.bfm = T.load_bfm_keypoints(bfm_path)
        self.backend = backend
        self.detect_threshold = float(detect_threshold)
        self.providers = onnx_providers(device)
        if backend == "onnx":
            self.onnx_path = self.onnx_dir / onnx_name(checkpoint)
            if not self.onnx_path.is_file():
                export_onnx(self.checkpoint_path, self.onnx_path, self.widen_factor)
            self.regressor = OnnxRegressor(
                self.onnx_path, providers=self.providers, batch_size=batch_size, threads=threads
            )
        elif backend == "torch":
            from .mobilenet import load_mobilenet

            self.onnx_path = None
            self.regressor = TorchRegressor(
                load_mobilenet(self.checkpoint_path, self.widen_factor), batch_size
            )
        else:
            raise EmoheadInputError(
                f"unknown backend {backend!r}.", fix="use expression.backend: onnx | torch."
            )
        self._detector = detector
        self._threads = threads

    # ------------------------------------------------------------------ detection
    @property
    def detector(self):
        if self._detector is None:
            self._detector = _default_detector(
                self.assets_dir, self.onnx_dir, self.providers, self.detect_threshold, self._threads
            )
        return self._detector

    def detect(self, img: np.ndarray) -> np.ndarray:
        """(N, 5) face boxes with score >= detect_threshold, best first."""
        return self._clean(self.detector.detect(img))

    def detect_batch(self, frames: list[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Boxes of each frame; one batched detector call when the detector supports it and
        the frames share a size."""
        if hasattr(self.detector, "detect_batch") and len({f.shape for f in frames}) == 1:
            return [self._clean(b) for b in self.detector.detect_batch(np.stack(frames))]
        return [self.detect(f) for f in frames]

    def _clean(self, boxes) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
        boxes = boxes[boxes[:, 4] >= self.detect_threshold]
        return boxes[np.argsort(-boxes[:, 4], kind="stable")]

    # ------------------------------------------------------------------ regression
    def params_from_rois(self, images: list[np.ndarray], rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regress params (N, 62) and landmarks (N, 68, 3) from one ROI per image (batched)."""
        if len(images) == 0:
            return np.zeros((0, T.N_PARAMS), np.float32), np.zeros((0, 68, 3), np.float32)
        crops = np.stack([T.crop_resize(im, r) for im, r in zip(images, rois)])
        params = T.denormalize(self.regressor(T.normalize_crops(crops)), self.stats)
        return params, T.reconstruct_landmarks(params, rois, self.bfm)

    def fit_boxes(self, images: list[np.ndarray], boxes: np.ndarray):
        """Two-pass fit from face boxes: box ROI -> landmarks -> landmark ROI -> params.

        Returns (params (N, 62), landmarks (N, 68, 3), final ROIs (N, 4))."""
        rois1 = np.stack([T.roi_box_from_bbox(b) for b in boxes]) if len(boxes) else np.zeros((0, 4))
        _, lm1 = self.params_from_rois(images, rois1)
        return self.fit_landmarks(images, lm1)

    def fit_landmarks(self, images: list[np.ndarray], prev_landmarks: np.ndarray):
        """Second pass / tracking: ROI from (previous) landmarks -> params, landmarks, ROIs."""
        rois = (
            np.stack([T.roi_box_from_landmarks(lm) for lm in prev_landmarks])
            if len(prev_landmarks)
            else np.zeros((0, 4))
        )
        params, lm = self.params_from_rois(images, rois)
        return params, lm, rois

    def __call__(self, img: np.ndarray, max_faces: int | None = None) -> list[Face]:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise EmoheadInputError(f"expected a BGR uint8 HxWx3 image, got {img.dtype} {img.shape}.")
        boxes = self.detect(img)
        if max_faces is not None:
            boxes = boxes[:max_faces]
        params, lms, rois = self.fit_boxes([img] * len(boxes), boxes)
        faces = []
        for b, p, lm, r in zip(boxes, params, lms, rois):
            pi = T.pose_from_params(p[None])
            faces.append(
                Face(
                    box=b.astype(np.float32),
                    roi_box=r.astype(np.float32),
                    params=p,
                    landmarks=lm,
                    pose_info={k: float(v[0]) for k, v in pi.items() if k != "R"},
                )
            )
        return faces

    def asset_hashes(self) -> dict[str, str]:
        """sha256 of every model file this instance uses (for output metadata)."""
        out = {
            self.checkpoint_path.name: sha256_file(self.checkpoint_path),
            PARAM_STATS_FILE: self.stats.sha256,
            self.bfm.source: self.bfm.sha256,
        }
        if self.onnx_path is not None:
            out[self.onnx_path.name] = sha256_file(self.onnx_path)
        det_path = getattr(self._detector, "onnx_path", None) or getattr(self._detector, "path", None)
        if det_path is not None and Path(det_path).is_file():
            out[Path(det_path).name] = sha256_file(det_path)
        return out


def _default_detector(
    assets_dir: Path, onnx_dir: Path, providers: list[str], threshold: float = 0.5, threads: int | None = None
):
    """FaceBoxes of the preprocessing stage (emohead_core.preprocess.facedetect), ONNX exported once."""
    from ..preprocess import facedetect

    onnx_path = onnx_dir / FACEBOXES_ONNX
    if not onnx_path.is_file():
        facedetect.export_onnx(assets_dir / FACEBOXES_PTH, onnx_path)
    det = facedetect.FaceDetector(
        str(onnx_path), providers=providers, threshold=threshold, threads=int(threads or 0)
    )
    det.onnx_path = onnx_path
    return det
