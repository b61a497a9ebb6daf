"""Training of the expression-conditioned NeRF (Sec. III-D, Appendix C).

Stage 1 (steps < refine_start): L_photo = mean squared error of rays sampled inside the head
mask (plus a fraction just outside it, whose target is the background so the field learns to be
empty there). Stage 2: L = lambda_photo L_photo + lambda_cord L_cord + lambda_shape L_shape
(eqs. 15-16) with L_cord / L_shape on a rendered patch covering the 3DDFA ROI of the head.
Adam, learning rate decayed linearly. All randomness comes from one torch.Generator whose state
is checkpointed, so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..config import schema_defaults
from ..io import atomic_path
from .camera import DEFAULT_BOX_CENTER, DEFAULT_BOX_HALF
from .data import sampling_region
from .network import EmoNeRF, NeRFConfig
from .renderer import Renderer, pick_device
from .volume import OccupancyGrid, alpha_to_sigma_threshold

log = logging.getLogger(__name__)

# config/schema.yaml's render.train, plus what the job passes besides the config: the subject's
# default emotion tag and the L_shape model files
DEFAULT_TRAIN = dict(schema_defaults("render.train"), emotion="neutral", shape_net=None, param_stats=None)


def train_config(cfg: dict | None) -> dict:
    out = copy.deepcopy(DEFAULT_TRAIN)
    for k, v in (cfg or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    if out["refine_start"] is None:
        out["refine_start"] = out["iters"] // 2  # paper: L_refine in the second half
    return out


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of images in [0, 1] (optionally over mask pixels)."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return float(10.0 * math.log10(1.0 / max(mse, 1e-12)))


def roi_uv(landmarks: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """p x p pixel coordinates covering 3DDFA's landmark ROI (tddfa.roi_box_from_landmarks)."""
    from ..expression.tddfa import roi_box_from_landmarks

    x1, y1, x2, y2 = roi_box_from_landmarks(landmarks[:, :2])
    t = (np.arange(p) + 0.5) / p
    us, vs = x1 + t * (x2 - x1) - 0.5, y1 + t * (y2 - y1) - 0.5
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    return np.stack([uu.reshape(-1), vv.reshape(-1)], 1).astype(np.float32), np.array([x1, y1, x2, y2])


def sample_image(img: np.ndarray, uv: np.ndarray) -> torch.Tensor:
    """Bilinear samples (N, 3) of an (H, W, 3) float image at pixel coordinates uv (N, 2)."""
    H, W = img.shape[:2]
    t = torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]
    g = torch.as_tensor(uv, dtype=torch.float32).clone()
    g[:, 0] = (2 * g[:, 0] + 1) / W - 1
    g[:, 1] = (2 * g[:, 1] + 1) / H - 1
    s = F.grid_sample(t, g[None, None], mode="bilinear", padding_mode="border", align_corners=False)
    return s[0, :, 0].T


class Trainer:
    def __init__(
        self,
        data: dict,
        model_cfg: dict | None,
        train_cfg: dict | None,
        *,
        device="auto",
        box: dict | None = None,
        clip_loss=None,
        shape_loss=None,
    ):
        self.cfg = train_config(train_cfg)
        self.model_cfg = dict(model_cfg or {})
        self.device = pick_device(device)
        self.data = data
        box = box or {}
        self.box = dict(
            center_um=list(box.get("center_um", DEFAULT_BOX_CENTER)),
            half_um=float(box.get("half_um", DEFAULT_BOX_HALF)),
        )
        torch.manual_seed(int(self.cfg["seed"]))  # network initialisation
        self.model = EmoNeRF(NeRFConfig.from_dict(self.model_cfg)).to(self.device)
        tr = data.train_idx
        self.model.set_alpha_stats(data.alpha[tr].mean(0), data.alpha[tr].std(0))
        oc = self.cfg["occupancy"]
        thr = alpha_to_sigma_threshold(float(oc["alpha_threshold"]), int(self.cfg["n_samples"]))
        self.occ = OccupancyGrid(int(oc["res"]), float(oc["decay"]), thr).to(self.device)
        self.renderer = Renderer(
            self.model,
            self.occ,
            self.box["center_um"],
            self.box["half_um"],
            int(self.cfg["n_samples"]),
            sampler=self.cfg["sampler"],
        )
        grid_params = list(self.model.encoder.parameters())
        gid = {id(p) for p in grid_params}
        mlp_params = [p for p in self.model.parameters() if id(p) not in gid]
        self.opt = torch.optim.Adam(
            [
                dict(params=grid_params, lr=float(self.cfg["lr_grid"])),
                dict(params=mlp_params, lr=float(self.cfg["lr_mlp"]), weight_decay=1e-6),
            ],
            betas=(0.9, 0.99),
            eps=1e-15,
        )
        iters, fin = int(self.cfg["iters"]), float(self.cfg["lr_final_ratio"])
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 1.0 - (1.0 - fin) * min(s, iters) / max(iters, 1)
        )  # linear schedule
        self.gen = torch.Generator().manual_seed(int(self.cfg["seed"]))
        self.step = 0
        self.history: list[dict] = []
        self.clip_loss, self.shape_loss = clip_loss, shape_loss
        self.beta_id = torch.as_tensor(data.shape[tr].mean(0), dtype=torch.float32, device=self.device)
        self.H, self.W = data.H, data.W
        self._mark_trainable_cells()

    def _mark_trainable_cells(self, max_frames: int = 64) -> None:
        """Occupancy cells whose projection never falls in a training frame's sampling region
        can never be supervised: keep them empty. Frames are spread over all training clips
        (at least 4 per clip)."""
        tr = self.data.train_idx
        n_clips = len(np.unique(self.data.clip_of[tr]))
        n = min(len(tr), max(max_frames, 4 * n_clips))
        sel = tr[np.linspace(0, len(tr) - 1, n).round().astype(int)]
        X = self.occ.cell_centers().cpu().double().numpy() * self.box["half_um"] + np.asarray(
            self.box["center_um"]
        )
        seen = np.zeros(len(X), bool)
        for i in sel:
            P = self.data.poses[i]
            uv = X @ P[:2, :3].T + P[:2, 3]
            region = sampling_region(self.data.mask(int(i)))
            u = np.round(uv[:, 0]).astype(int)
            v = np.round(uv[:, 1]).astype(int)
            ok = (u >= 0) & (u < self.W) & (v >= 0) & (v < self.H)
            seen[ok] |= region[v[ok], u[ok]]
        r = self.occ.res
        self.occ.trainable.copy_(torch.as_tensor(seen.reshape(r, r, r), device=self.device))
        self.occ.occupied.copy_(self.occ.trainable)  # before the first density update

    # ------------------------------------------------------------------ rays
    def _pixels(self, i: int):
        """Head mask of frame i and the flat pixel indices inside it and around it (the rest of
        the sampling region: the head mask's bounding box grown by 15 %)."""
        m = self.data.mask(i)
        inside = torch.from_numpy(np.flatnonzero(m))
        outside = torch.from_numpy(np.flatnonzero(sampling_region(m) & ~m))
        return m, inside, outside

    def _face_pixels(self, i: int, head: np.ndarray) -> torch.Tensor:
        """Flat pixel indices of frame i inside the convex hull of its 68 landmarks (brows, eyes,
        nose, mouth, jaw: where expressions show) and inside the head mask."""
        import cv2

        lm = self.data.landmarks[i][:, :2]
        if not np.isfinite(lm).all():  # no fitted face on this frame: uniform in the head mask
            return torch.zeros(0, dtype=torch.int64)
        hull = cv2.convexHull(np.round(lm).astype(np.int32))
        face = np.zeros(head.shape, np.uint8)
        cv2.fillConvexPoly(face, hull, 1)
        return torch.from_numpy(np.flatnonzero(face.astype(bool) & head))

    def sample_batch(self, i: int, n: int | None = None):
        """``n`` training rays of frame i: pixel coordinates, targets (the frame inside the head
        mask, the clip's background around it, where the field must be empty) and background.
        ``face_fraction`` of the rays inside the head are drawn from the landmark hull (the face)."""
        n = int(self.cfg["rays"]) if n is None else int(n)
        m, inside, outside = self._pixels(i)
        n_in = n if len(outside) == 0 else int(round(n * float(self.cfg["inside_fraction"])))
        ff = float(self.cfg["face_fraction"])
        face = self._face_pixels(i, m) if ff > 0 else None
        n_face = int(round(n_in * ff)) if face is not None and len(face) else 0
        pick = [inside[torch.randint(len(inside), (n_in - n_face,), generator=self.gen)]]
        if n_face:
            pick.append(face[torch.randint(len(face), (n_face,), generator=self.gen)])
        if n - n_in > 0:
            pick.append(outside[torch.randint(len(outside), (n - n_in,), generator=self.gen)])
        flat = torch.cat(pick)
        uv = torch.stack([(flat % self.W).float(), (flat // self.W).float()], 1)
        sel = flat.numpy()
        gt = torch.from_numpy(self.data.frame(i).reshape(-1, 3)[sel].astype(np.float32) / 255.0)
        bg = torch.from_numpy(self.data.bg(i).reshape(-1, 3)[sel].astype(np.float32) / 255.0)
        head = torch.from_numpy(m.reshape(-1)[sel])
        target = torch.where(head[:, None], gt, bg)  # outside the head: the field must be empty
        return uv, target.to(self.device), bg.to(self.device)

    def draw_frames(self) -> np.ndarray:
        """``frames_per_step`` training frames, uniform over all training frames of all clips."""
        tr = self.data.train_idx
        k = max(1, int(self.cfg["frames_per_step"]))
        return tr[torch.randint(len(tr), (k,), generator=self.gen).numpy()]

    def ray_batch(self, frames: np.ndarray):
        """Rays of a training step split evenly over ``frames``: origins, directions, per-ray
        expression (or one expression when there is one frame), targets, backgrounds."""
        n = int(self.cfg["rays"])
        counts = [n // len(frames) + (1 if k < n % len(frames) else 0) for k in range(len(frames))]
        O, D, C, Y, B = [], [], [], [], []
        for i, c in zip(frames, counts):
            uv, target, bg = self.sample_batch(int(i), c)
            o, d = self.renderer.camera(self.data.poses[i]).rays(uv)
            O.append(o)
            D.append(d)
            C.append(torch.as_tensor(self.data.alpha[i]).expand(c, -1))
            Y.append(target)
            B.append(bg)
        cond = torch.as_tensor(self.data.alpha[frames[0]]) if len(frames) == 1 else torch.cat(C)
        return torch.cat(O), torch.cat(D), cond, torch.cat(Y), torch.cat(B)

    # ------------------------------------------------------------------ stage 2
    def refine_losses(self, i: int):
        p = int(self.cfg["patch_size"])
        uv, _ = roi_uv(self.data.landmarks[i], p)
        behind = self.data.behind(i)
        bgp = sample_image(behind.astype(np.float32) / 255.0, uv).to(self.device)
        out = self.renderer.render_uv(
            self.data.poses[i], torch.as_tensor(uv), self.data.alpha[i], bgp, perturb=True, generator=self.gen
        )
        patch = out["rgb"].T.reshape(1, 3, p, p)
        losses = {}
        if self.clip_loss is not None:
            losses["cord"] = self.clip_loss(
                patch, self.data.clip(i).get("emotion") or self.cfg["emotion"]
            )  # its tag
        if self.shape_loss is not None:
            losses["shape"] = self.shape_loss(patch, self.beta_id)
        return losses

    # ------------------------------------------------------------------ step
    def update_occupancy(self):
        oc = self.cfg["occupancy"]
        if self.step < int(oc["warmup"]) or self.step % int(oc["update_every"]):
            return
        tr = self.data.train_idx
        r = self.occ.res
        with torch.no_grad():
            new = None
            for _ in range(int(oc["n_cond"])):  # max over a few training expressions
                j = int(tr[int(torch.randint(len(tr), (1,), generator=self.gen))])
                cur = self._cell_density(torch.as_tensor(self.data.alpha[j], device=self.device))
                new = cur if new is None else torch.maximum(new, cur)
            self.occ.density.copy_(torch.maximum(self.occ.density * self.occ.decay, new.reshape(r, r, r)))
            self.occ.refresh()

    @torch.no_grad()
    def _cell_density(self, a: torch.Tensor) -> torch.Tensor:
        r = self.occ.res
        idx = torch.arange(r)
        g = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(-1, 3).float()
        x = ((g + torch.rand(g.shape, generator=self.gen)) / r * 2.0 - 1.0).to(self.device)
        return torch.cat([self.model.density(c, a) for c in x.split(65536)])

    def train_step(self) -> dict:
        self.model.train()
        frames = self.draw_frames()
        i = int(frames[0])  # the frame of the stage-2 patch (L_refine)
        self.update_occupancy()
        o, d, cond, target, bg = self.ray_batch(frames)
        out = self.renderer.render_rays(o, d, cond, bg, perturb=True, generator=self.gen)
        photo = F.mse_loss(out["rgb"], target)  # L_photo
        loss = float(self.cfg["lambda_photo"]) * photo
        row = dict(
            step=self.step + 1,
            photo=float(photo.detach()),
            psnr=-10 * math.log10(max(float(photo.detach()), 1e-12)),
        )
        if (
            self.step >= int(self.cfg["refine_start"])
            and (self.clip_loss is not None or self.shape_loss is not None)
            and self.step % int(self.cfg["refine_every"]) == 0
        ):
            ref = self.refine_losses(i)  # L_refine (eq. 16)
            if "cord" in ref:
                loss = loss + float(self.cfg["lambda_cord"]) * ref["cord"]
                row["cord"] = float(ref["cord"].detach())
            if "shape" in ref:
                loss = loss + float(self.cfg["lambda_shape"]) * ref["shape"]
                row["shape"] = float(ref["shape"].detach())
        self.opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # (no sample fell in an occupied cell: nothing to update)
            loss.backward()
            self.opt.step()
        self.sched.step()
        self.step += 1
        row.update(
            loss=float(loss.detach()),
            lr=self.opt.param_groups[0]["lr"],
            occupied=self.occ.fraction(),
            n_eval=out["n_eval"],
        )
        return row

    # ------------------------------------------------------------------ validation
    def validate(self, frames: np.ndarray | None = None) -> dict:
        """PSNR of rendered test frames vs ground truth, and of the background-only baseline
        (nothing rendered: background in the head mask, ground truth elsewhere)."""
        self.model.eval()
        val = self.data.test_idx if frames is None else np.asarray(frames)
        r_head, r_full, b_head, b_full = [], [], [], []
        for i in val:
            i = int(i)
            gt = self.data.frame(i).astype(np.float32) / 255.0
            m = self.data.mask(i)
            behind = self.data.behind(i).astype(np.float32) / 255.0
            img, _ = self.renderer.render_frame(
                self.data.poses[i], self.data.alpha[i], behind, region=sampling_region(m)
            )
            r_head.append(psnr(img, gt, m))
            r_full.append(psnr(img, gt))
            b_head.append(psnr(behind, gt, m))
            b_full.append(psnr(behind, gt))
        return dict(
            val_psnr_head=float(np.mean(r_head)),
            val_psnr_full=float(np.mean(r_full)),
            baseline_psnr_head=float(np.mean(b_head)),
            baseline_psnr_full=float(np.mean(b_full)),
            n_frames=int(len(val)),
        )

    # ------------------------------------------------------------------ checkpoints
    def fingerprint(self) -> str:
        """What a checkpoint must share with this trainer to be resumed: the training settings
        (all but the logging / checkpoint / validation cadence), the model settings, the head
        box, and the prepared subject (clips, resolution, per-frame alphas and cameras, split)."""
        bookkeeping = ("ckpt_every", "log_every", "val_every", "val_frames")
        cfg = {k: v for k, v in self.cfg.items() if k not in bookkeeping}
        d = self.data
        clips = [(c["sample"], c["n_frames"], c.get("test_start"), c.get("emotion")) for c in d.clips]
        head = [cfg, self.model_cfg, self.box, d.resolution, clips]
        h = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
        for a in (d.alpha, d.poses, d.train_idx, d.test_idx):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def resume(self, path) -> bool:
        """Load the checkpoint at ``path`` if it is this run's (same :meth:`fingerprint`); False
        (nothing loaded) for a checkpoint of other settings or data, or one without a
        fingerprint."""
        from ..checkpoint import load_checkpoint

        s = load_checkpoint(path, map_location=self.device, what="renderer checkpoint")
        if s.get("fingerprint") != self.fingerprint():
            return False
        self._load_state(s)
        return True

    def state_dict(self) -> dict:
        return dict(
            fingerprint=self.fingerprint(),
            model=self.model.state_dict(),
            occ=self.occ.state_dict(),
            opt=self.opt.state_dict(),
            sched=self.sched.state_dict(),
            gen=self.gen.get_state(),
            step=self.step,
            history=self.history,
            train_cfg=self.cfg,
            model_cfg=self.model_cfg,
            box=self.box,
        )

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)

    def load(self, path) -> None:
        from ..checkpoint import load_checkpoint

        self._load_state(load_checkpoint(path, map_location=self.device, what="renderer checkpoint"))

    def _load_state(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.occ.load_state_dict(s["occ"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.gen.set_state(s["gen"])
        self.step = int(s["step"])
        self.history = list(s["history"])

    def fit(self, steps: int | None = None, *, ckpt_path=None, progress: bool = True) -> list[dict]:
        """Train until ``iters`` (or ``steps`` more), checkpointing every ``ckpt_every``."""
        from tqdm import tqdm

        end = int(self.cfg["iters"]) if steps is None else min(self.step + steps, int(self.cfg["iters"]))
        t0 = time.perf_counter()
        bar = tqdm(total=end - self.step, disable=not progress, desc="render train", mininterval=5)
        while self.step < end:
            row = self.train_step()
            row["time_s"] = time.perf_counter() - t0
            self.history.append(row)
            bar.update(1)
            if self.step % int(self.cfg["log_every"]) == 0:
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}", psnr=f"{row['psnr']:.1f}", occ=f"{row['occupied']:.2f}"
                )
            ve = int(self.cfg["val_every"])
            if ve and self.step % ve == 0:
                vi = self.data.test_idx
                sel = vi[np.linspace(0, len(vi) - 1, min(len(vi), int(self.cfg["val_frames"]))).astype(int)]
                v = self.validate(sel)
                row.update({k: v[k] for k in ("val_psnr_head", "baseline_psnr_head")})
                log.info(
                    "step %d val PSNR head %.2f (background %.2f)",
                    self.step,
                    v["val_psnr_head"],
                    v["baseline_psnr_head"],
                )
            if ckpt_path is not None and self.step % int(self.cfg["ckpt_every"]) == 0:
                self.save(ckpt_path)
        bar.close()
        if ckpt_path is not None:
            self.save(ckpt_path)
        return self.history


LOSS_COLUMNS = [
    "step",
    "loss",
    "photo",
    "cord",
    "shape",
    "psnr",
    "lr",
    "occupied",
    "n_eval",
    "time_s",
    "val_psnr_head",
    "baseline_psnr_head",
]


def draw_loss(fig, history: list[dict]) -> None:
    """The renderer's loss.png (:func:`emohead_core.loss_curves.write_loss_curves`): L_photo, PSNR
    of training rays and validation frames, the L_refine terms."""
    steps = np.array([r["step"] for r in history])
    ax = fig.subplots(1, 3)
    ax[0].semilogy(steps, [r["photo"] for r in history], lw=0.6, label="L_photo")
    ax[0].set_title("L_photo (MSE)")
    ax[1].plot(steps, [r["psnr"] for r in history], lw=0.6, label="train rays")
    vs = [(r["step"], r["val_psnr_head"], r["baseline_psnr_head"]) for r in history if "val_psnr_head" in r]
    if vs:
        vs = np.array(vs)
        ax[1].plot(vs[:, 0], vs[:, 1], "o-", label="val (head)")
        ax[1].plot(vs[:, 0], vs[:, 2], "--", label="background only")
    ax[1].set_title("PSNR (dB)")
    ax[1].legend()
    for key in ("cord", "shape"):
        pts = [(r["step"], r[key]) for r in history if key in r]
        if pts:
            pts = np.array(pts)
            ax[2].plot(
                pts[:, 0], pts[:, 1] / (np.abs(pts[:, 1]).max() + 1e-12), lw=0.6, label=f"L_{key} (scaled)"
            )
    ax[2].set_title("L_refine terms (stage 2)")
    ax[2].legend() if ax[2].lines else None
    for a in ax:
        a.set_xlabel("iteration")


def load_renderer(ckpt_path, device="auto") -> Renderer:
    """The trained renderer of ``model.pt`` (or a training checkpoint), loaded without running
    code from the file (:mod:`emohead_core.checkpoint`)."""
    from ..checkpoint import load_checkpoint

    dev = pick_device(device)
    s = load_checkpoint(
        ckpt_path,
        map_location=dev,
        what="renderer model",
        fix="train the subject: snakemake results/render/<subject>/model.pt",
    )
    from ..checkpoint import building_from

    fix = "train the subject with the current settings: snakemake results/render/<subject>/model.pt"
    with building_from(ckpt_path, what="renderer model", fix=fix):
        model = EmoNeRF(NeRFConfig.from_dict(s["model_cfg"])).to(dev)
        model.load_state_dict(s["model"])
        model.eval()
        oc = s["train_cfg"]["occupancy"]
        occ = OccupancyGrid(int(oc["res"]), float(oc["decay"])).to(dev)
        occ.load_state_dict(s["occ"])
        r = Renderer(model, occ, s["box"]["center_um"], s["box"]["half_um"], int(s["train_cfg"]["n_samples"]))
    r.source = str(ckpt_path)  # named by errors of the frames it renders
    return r
