"""Rule expression_hyperplanes: labelled expression frames of one actor (or 'all') ->
MAR-balanced one-vs-rest emotion hyperplanes, accuracy table and plots (Appendix B)."""

from pathlib import Path

from emohead_core.expression import hyperplanes as H
from emohead_core.logutil import log_to
from emohead_core.preprocess import datasets

with log_to(snakemake.log[0]):
    opts = snakemake.params.opts
    actor = snakemake.wildcards.actor
    table = datasets.read_table(snakemake.input.samples)
    paths = {Path(p).stem: p for p in snakemake.params.expression}
    frames = H.collect_frames(
        table, paths, actor=actor, splits=opts["splits"], held_out=dict(snakemake.params.held_out)
    )
    if frames["held_out_frames"]:
        print(
            f"left out {sum(frames['held_out_frames'].values())} held-out frames of "
            f"{len(frames['held_out_frames'])} clips (tested by the renderer / audio2exp)"
        )
    result = H.train_hyperplanes(
        frames["exp"],
        frames["mar"],
        frames["emotion"],
        frames["clip"],
        n_groups=opts["mar_groups"],
        C=opts["svm_c"],
        cv_folds=opts["cv_folds"],
        seed=opts["seed"],
        quota=opts["quota"],
        edit_space=opts["edit_space"],
    )
    meta = {
        "dataset": snakemake.wildcards.dataset,
        "actor": actor,
        "options": dict(opts),
        "clips": sorted(set(frames["clip"])),
        "held_out_frames": frames["held_out_frames"],
    }
    out_dir = Path(snakemake.output[0]).parent
    H.save_hyperplanes(result, out_dir, meta=meta, frames=frames)
    print((out_dir / "accuracy.md").read_text())
