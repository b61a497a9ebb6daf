"""Published numbers of the paper (EmoHead, Tables I, II, IV, VI), shown as "paper" rows.

Values transcribed from ``../shared/paper/emohead.md``; None = "-" in the paper.
M/F-LMD is split into its two numbers. Sync. is the SyncNet confidence (LSE-C).
"""

from __future__ import annotations

MAIN_COLUMNS = [
    "SSIM",
    "PSNR",
    "M-LMD",
    "F-LMD",
    "FID",
    "AUE",
    "LSE-C",
    "ER",
    "Fidelity",
    "Coherence",
    "Empathy",
]


def _rows(text: str) -> list[tuple[str, dict]]:
    out = []
    for line in text.strip().splitlines():
        name, *vals = [v.strip() for v in line.split("|")]
        ssim, psnr, lmd, fid, aue, sync, er, fi, co, em = vals
        m, f = lmd.split("/") if lmd != "-" else ("-", "-")
        cells = [ssim, psnr, m, f, fid, aue, sync, er, fi, co, em]
        out.append((name, {c: (None if v == "-" else float(v)) for c, v in zip(MAIN_COLUMNS, cells)}))
    return out


# Table I: MEAD
TABLE_I = _rows("""
SadTalker | 0.606 | 19.042 | 2.038/2.335 | 69.2 | 2.86 | 5.68 | 52.11 | 3.2 | 3.8 | 3.2
LivePortrait | 0.720 | 26.161 | 1.314/1.572 | 59.5 | 2.05 | 6.96 | 61.82 | 3.3 | 3.5 | 2.9
EAMM | 0.610 | 18.867 | 2.525/2.814 | 31.3 | 2.35 | 1.76 | 31.08 | 2.7 | 2.9 | 3.5
EAT | 0.652 | 20.007 | 1.750/1.668 | 34.6 | 1.48 | 7.98 | 64.40 | 2.7 | 3.8 | 4.0
EDTalk-V | 0.769 | 22.771 | 1.102/1.060 | 38.5 | 1.56 | 6.89 | 68.85 | 2.8 | 3.1 | 3.7
Ours | 0.891 | 28.262 | 1.031/0.981 | 30.9 | 1.41 | 8.08 | 73.28 | 4.6 | 4.3 | 4.2
Groundtruth | - | - | - | - | - | 7.36 | 79.65 | 4.9 | 4.7 | 4.4
""")

# Table II: CREMA-D
TABLE_II = _rows("""
SadTalker | 0.688 | 25.572 | 2.851/2.156 | 63.7 | 2.01 | 5.99 | 69.59 | 3.4 | 3.7 | 3.8
LivePortrait | 0.873 | 28.985 | 1.411/1.503 | 33.6 | 1.94 | 6.02 | 70.13 | 3.5 | 3.6 | 3.6
EAMM | 0.650 | 21.910 | 2.751/2.824 | 35.6 | 2.19 | 3.22 | 40.72 | 3.2 | 3.1 | 3.3
EAT | 0.794 | 23.712 | 1.925/1.791 | 32.3 | 1.98 | 5.70 | 61.76 | 3.1 | 3.7 | 3.5
EDTalk-V | 0.753 | 27.641 | 1.228/1.137 | 40.5 | 1.81 | 5.57 | 54.46 | 3.0 | 2.9 | 3.2
Ours | 0.914 | 31.621 | 1.191/1.035 | 29.3 | 1.55 | 6.11 | 75.98 | 4.5 | 4.7 | 4.3
Groundtruth | - | - | - | - | - | 7.09 | 82.51 | 4.9 | 4.8 | 4.8
""")

# Table IV: ablations on MEAD (no human evaluation columns)
TABLE_IV = [
    (n, {k: v for k, v in d.items() if k not in ("Fidelity", "Coherence", "Empathy")})
    for n, d in _rows("""
w/o audio expression alignment | 0.730 | 25.191 | 1.149/1.082 | 89.6 | 1.95 | 6.19 | 63.44 | - | - | -
w/o hyperplane refinement | 0.872 | 27.410 | 1.291/1.203 | 59.2 | 1.86 | 7.25 | 61.29 | - | - | -
Ours | 0.891 | 28.262 | 1.031/0.981 | 30.9 | 1.41 | 8.08 | 73.28 | - | - | -
Ours (FaceVerse) | 0.872 | 27.740 | 1.175/1.225 | 43.3 | 1.52 | 7.39 | 61.88 | - | - | -
Ours (MorphableDiffusion) | 0.886 | 27.731 | 1.130/1.066 | 38.1 | 1.55 | 7.01 | 70.31 | - | - | -
Ours (3DDFA) | 0.891 | 28.262 | 1.031/0.981 | 30.9 | 1.41 | 8.08 | 73.28 | - | - | -
d, d_h = 256, 256 | 0.717 | 27.018 | 1.092/1.119 | 33.7 | 1.66 | 6.58 | 66.26 | - | - | -
d, d_h = 512, 512 | 0.891 | 28.262 | 1.031/0.981 | 30.9 | 1.41 | 8.08 | 73.28 | - | - | -
d, d_h = 768, 768 | 0.872 | 28.155 | 1.087/1.121 | 31.3 | 1.36 | 7.05 | 72.57 | - | - | -
d, d_h = 1024, 1024 | 0.852 | 27.719 | 1.093/1.139 | 33.5 | 1.44 | 7.96 | 70.61 | - | - | -
n = 3 | 0.803 | 26.114 | 1.072/1.087 | 34.6 | 1.56 | 6.77 | 69.31 | - | - | -
n = 5 | 0.891 | 28.262 | 1.031/0.981 | 30.9 | 1.41 | 8.08 | 73.28 | - | - | -
n = 8 | 0.869 | 27.256 | 1.064/0.991 | 31.6 | 1.49 | 7.58 | 72.17 | - | - | -
n = 12 | 0.885 | 28.223 | 1.105/1.076 | 32.9 | 1.45 | 7.96 | 74.42 | - | - | -
""")
]

# Table VI: loss ablations; per dataset RMSE, M-LMD, F-LMD, AUE, ER
VI_COLUMNS = ["RMSE", "M-LMD", "F-LMD", "AUE", "ER"]


def _vi(text: str) -> list[tuple[str, dict]]:
    out = []
    for line in text.strip().splitlines():
        name, mead, crema = [v.strip() for v in line.split("|")]
        row = {}
        for ds, cells in (("MEAD", mead), ("CREMA-D", crema)):
            rmse, lmd, aue, er = cells.split()
            m, f = lmd.split("/") if lmd != "-" else ("-", "-")
            for c, v in zip(VI_COLUMNS, [rmse, m, f, aue, er]):
                row[(ds, c)] = None if v == "-" else float(v)
        out.append((name, row))
    return out


TABLE_VI = _vi("""
L_reg | 0.45 - - - | 0.39 - - -
L_reg + L_reg^const | 0.27 - - - | 0.16 - - -
L_reg + L_reg^const + L_cord | - 1.176/1.099 1.52 66.53 | - 1.233/1.179 1.79 69.80
L_reg + L_reg^const + L_cord + L_shape (row 4 as printed) | - 1.104/1.051 1.73 63.71 | - 1.208/1.095 1.58 61.23
L_reg + L_reg^const + L_cord + L_shape | - 1.031/0.981 1.41 73.28 | - 1.191/1.035 1.55 75.98
rho = 0.2 | 0.35 - - - | 0.22 - - -
rho = 0.5 | 0.27 - - - | 0.16 - - -
rho = 0.7 | 0.29 - - - | 0.25 - - -
rho = 1 | 0.31 - - - | 0.27 - - -
lambda = {1, 1e-2, 1e-9} | - 1.158/1.094 1.56 74.33 | - 1.271/1.096 1.61 75.01
lambda = {1, 1e-3, 1e-8} | - 1.004/0.853 1.43 72.11 | - 1.215/1.050 1.56 71.45
lambda = {1, 5e-3, 5e-9} | - 1.085/1.098 1.49 72.48 | - 1.155/1.007 1.70 73.69
lambda = {1, 1e-2, 1e-8} | - 1.091/1.072 1.55 69.79 | - 1.187/1.066 1.73 70.92
lambda = {1, 1e-3, 1e-9} | - 1.034/0.981 1.41 73.28 | - 1.191/1.035 1.55 75.98
""")
