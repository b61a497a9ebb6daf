"""Preprocessing stage (paper Sec. IV-A, Appendix C): sample tables of the datasets
(:mod:`.datasets`), FaceBoxes face detection (:mod:`.facedetect`), 25 fps square face crops and
16 kHz audio (:mod:`.crop`), and the parse-time plan of ``rules/preprocess.smk`` (:mod:`.plan`).

Submodules are imported explicitly (``from emohead_core.preprocess import crop``): the Snakefile
imports :mod:`.datasets` and :mod:`.plan` when it is parsed, without cv2 / onnxruntime / torch.
"""
