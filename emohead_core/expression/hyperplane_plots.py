"""Plots of the emotion hyperplanes (written beside hyperplanes.json by
:func:`emohead_core.expression.hyperplanes.save_hyperplanes`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .hyperplanes import accuracy_table


def plot_hyperplanes(result: dict, out_dir: str | os.PathLike, frames: dict | None) -> dict[str, Path]:
    """distances.png (signed distances, positives vs negatives per emotion), projection.png
    (2-D PCA of all frames with the normals drawn), cv_accuracy.png (bar chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    hp = result["hyperplanes"]
    zs = list(hp)
    paths = {}
    colors = {z: plt.cm.tab10(i % 10) for i, z in enumerate(zs)}
    if frames is not None and zs:
        X, L = np.asarray(frames["exp"], np.float64), np.asarray(frames["emotion"], dtype=object)
        ncol = min(3, len(zs))
        nrow = math.ceil(len(zs) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
        for ax, z in zip(axes.flat, zs):
            d = hp[z].distance(X)
            bins = np.linspace(d.min(), d.max(), 30)
            ax.hist(d[L != z], bins=bins, alpha=0.6, density=True, label="other emotions", color="grey")
            ax.hist(d[L == z], bins=bins, alpha=0.6, density=True, label=z, color=colors[z])
            ax.axvline(0, color="k", lw=1)
            ax.set_title(f"{z}: signed distance")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(zs) :]:
            ax.axis("off")
        fig.tight_layout()
        paths["distances"] = out_dir / "distances.png"
        _savefig(fig, paths["distances"])
        plt.close(fig)

        mu = X.mean(0)
        _, _, Vt = np.linalg.svd(X - mu, full_matrices=False)
        P = Vt[:2]
        Y = (X - mu) @ P.T
        fig, ax = plt.subplots(figsize=(6, 5))
        for z in sorted(set(L)):
            sel = L == z
            ax.scatter(Y[sel, 0], Y[sel, 1], s=5, alpha=0.5, color=colors.get(z, "grey"), label=z)
        # arrows: in-plane part of each unit normal, the longest drawn at 60% of the data range
        vs = {z: P @ hp[z].w_z for z in zs}
        longest = max(float(np.linalg.norm(v)) for v in vs.values()) or 1.0
        scale = 0.9 * float(np.abs(Y).max(0).min() or 1.0) / longest
        for z in zs:
            v = vs[z]
            ax.annotate(
                "",
                xy=(v[0] * scale, v[1] * scale),
                xytext=(0, 0),
                arrowprops=dict(arrowstyle="->", color=colors[z], lw=2),
            )
            ax.text(v[0] * scale * 1.08, v[1] * scale * 1.08, z, color=colors[z], fontsize=8)
        ax.set_xlabel("PC 1 of expression alpha")
        ax.set_ylabel("PC 2")
        ax.set_title("frames and normals w_z projected on PC 1-2 (relative length)")
        ax.legend(fontsize=7, markerscale=3)
        fig.tight_layout()
        paths["projection"] = out_dir / "projection.png"
        _savefig(fig, paths["projection"])
        plt.close(fig)

    rows = accuracy_table(result)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 1), 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["bacc_balanced"] for r in rows], 0.4, label="MAR-balanced sampling")
    ax.bar(x + 0.2, [r["bacc_unbalanced"] for r in rows], 0.4, label="unbalanced")
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, [r["emotion"] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("CV balanced accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["cv_accuracy"] = out_dir / "cv_accuracy.png"
    _savefig(fig, paths["cv_accuracy"])
    plt.close(fig)
    paths["direction_cosines"] = out_dir / "direction_cosines.png"
    plot_direction_cosines(result, paths["direction_cosines"])
    return paths


def plot_direction_cosines(result: dict, path: Path) -> None:
    """direction_cosines.png: the cosine matrix of the edit directions d_z (left) and, per edit
    space, the worst pair's |cos| and the share of requested alphas classified as their tag."""
    import matplotlib.pyplot as plt

    cos = result.get("direction_cosines") or {"tags": [], "cos": []}
    spaces = result.get("edit_spaces") or {}
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    tags, C = cos["tags"], np.asarray(cos["cos"], np.float64).reshape(len(cos["tags"]), -1)
    im = ax[0].imshow(C, vmin=-1, vmax=1, cmap="coolwarm")
    ax[0].set_xticks(range(len(tags)), tags, rotation=45, ha="right", fontsize=8)
    ax[0].set_yticks(range(len(tags)), tags, fontsize=8)
    for i in range(len(tags)):
        for j in range(len(tags)):
            ax[0].text(j, i, f"{C[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax[0], fraction=0.046)
    ax[0].set_title(f"cos(d_z, d_z') of the edit directions ({result.get('edit_space')})", fontsize=9)
    names = list(spaces)
    x = np.arange(len(names))
    ax[1].bar(x - 0.2, [spaces[n]["max_abs_cos"] or 0 for n in names], 0.4, label="max |cos| between tags")
    ax[1].bar(
        x + 0.2,
        [spaces[n]["agreement_mean"] or 0 for n in names],
        0.4,
        label="requested alpha classified as tag",
    )
    ax[1].set_xticks(x, names, fontsize=8)
    ax[1].set_ylim(0, 1.05)
    ax[1].axhline(0.9, color="k", lw=0.6, ls=":")
    ax[1].set_title("edit spaces on the fitted frames (tau = 1)", fontsize=9)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
