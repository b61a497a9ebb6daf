"""Emotion-recognition accuracy (ER): share of frames whose predicted emotion is the target tag.

Two classifiers, reported as separate columns:

* ``ER``: a frame-level facial-expression classifier by model path; offline, the 7-class FER model
  shipped in the ``facex`` wheel (``pkg:facex/assets/model_optimized.tflite``, run with
  ``ai-edge-litert``; input: the face box (dlib HOG detector, as facex classifies detected faces)
  in grey replicated to 3 channels, 200x200, [0, 1]; frames without a detected face are skipped).
* ``ER (3DMM-exp baseline)``: a multinomial logistic regression the pipeline trains itself on the
  ground-truth 3DDFA expression parameters (10-d) of the training clips, applied to the expression
  parameters fitted on the generated frames. Clearly a baseline: it only sees what 3DDFA sees.

Frames are counted only when the target emotion is among the classifier's classes (e.g. the
7-class FER model has no "contempt"); a clip whose tag is unknown to the classifier gets n/a.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..io import write_json_atomic

FACEX_CLASSES = ["angry", "disgusted", "fear", "happy", "neutral", "sad", "surprised"]


class TFLiteFER:
    """Frame classifier from a TFLite file (facex FER by default)."""

    def __init__(self, model_path: str | Path, classes: list[str] | None = None, size: int = 200,
                 threads: int = 1, face_crop: bool = True):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(model_path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.size = int(self.inp["shape"][1]) if len(self.inp["shape"]) == 4 else size
        self.classes = list(classes or FACEX_CLASSES)
        self.detector = None
        if face_crop:
            import dlib

            self.detector = dlib.get_frontal_face_detector()

    def _face(self, f: np.ndarray) -> np.ndarray | None:
        if self.detector is None:
            return f
        dets = self.detector(np.ascontiguousarray(f[..., ::-1]), 0)
        if not len(dets):
            return None
        r = max(dets, key=lambda r: r.area())
        h, w = f.shape[:2]
        x0, y0 = max(0, r.left()), max(0, r.top())
        x1, y1 = min(w, r.right() + 1), min(h, r.bottom() + 1)
        return f[y0:y1, x0:x1] if (x1 - x0 > 8 and y1 - y0 > 8) else None

    def probs(self, frames_bgr: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) BGR uint8 -> (T, n_classes) class probabilities (NaN rows: no face)."""
        res = []
        for f in frames_bgr:
            f = self._face(f)
            if f is None:
                res.append(np.full(len(self.classes), np.nan))
                continue
            g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
            g = cv2.resize(g, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            x = np.repeat(g[None, :, :, None], 3, axis=3)
            self.interp.set_tensor(self.inp["index"], x)
            self.interp.invoke()
            res.append(np.array(self.interp.get_tensor(self.out["index"])[0], np.float64))
        return np.stack(res)

    def predict(self, frames_bgr: np.ndarray) -> list[str | None]:
        p = self.probs(frames_bgr)
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
    def fit(cls, exp: np.ndarray, labels: list[str], C: float = 1.0, seed: int = 0) -> "ExpEmotionBaseline":
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
        write_json_atomic(path, {"kind": "ExpEmotionBaseline", "classes": self.classes,
                                 "mean": self.mean, "scale": self.scale, "coef": self.coef,
                                 "intercept": self.intercept, **extra})

    @classmethod
    def load(cls, path: str | Path) -> "ExpEmotionBaseline":
        d = json.loads(Path(path).read_text())
        return cls(d["classes"], d["mean"], d["scale"], d["coef"], d["intercept"])
