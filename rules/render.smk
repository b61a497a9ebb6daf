# Expression rendering module (paper Sec. III-C, III-D eqs. 15-16, Appendix C): a person-specific
# expression-conditioned NeRF per subject (config render.subjects).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/render/{subject}/prepared.npz       frames, cameras, alphas, head masks, background
#   results/render/{subject}/masks.png          head masks + landmarks + background (check)
#   results/render/{subject}/model.pt           trained field + occupancy grid (+ ckpt/last.pt: resume)
#   results/render/{subject}/loss.csv|png       loss curves
#   results/render/{subject}/test_render.mp4    held-out frames rendered from GT alphas and poses
#   results/render/{subject}/test_gt.mp4        the same frames of the crop video (same size)
#   results/render/{subject}/test_meta.json     subject, dataset, sample, frame range, fps
#   results/render/{subject}/val_psnr.json      validation PSNR and background-only baseline
#   results/render/{subject}/emotion_switch.mp4 emotion switch half way (eq. 9 + ramp), audio
#   results/render/{subject}/novel_views.png    yaw strip
#   results/render/{subject}/driven/{variant}/test_render.mp4|test_gt.mp4|test_meta.json
#       held-out frames rendered from audio (alpha_hat of audio2exp variant {variant}, the paper's
#       test setting; metrics method "ours" for main, "ours_{variant}" for the ablations)
from emohead_core.render import pipeline as rpipe

RENDER = config["render"]
RENDER_SUBJECTS = RENDER.get("subjects", {}) or {}
# subject -> {audio2exp variant: model dir} of the audio-driven test renders (rules/metrics.smk)
RENDER_DRIVEN = rpipe.driven_models(config, RESULTS, a2e_variants())


rule render_prepare:
    input:
        unpack(rpipe.smk_prepare_inputs(config, asset, clip_file, LAYOUT)),
    output:
        prepared=f"{RESULTS}/render/{{subject}}/prepared.npz",
        preview=report(
            f"{RESULTS}/render/{{subject}}/masks.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "masks"},
        ),
    log:
        f"{LOGS}/render/prepare/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/prepare/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: 1
    params:
        render={
            k: RENDER.get(k)
            for k in ("resolution", "val_fraction", "mask", "max_frames")
        },
        files=rpipe.smk_subject_files(config, clip_file),
    script:
        "../workflow/scripts/render_prepare.py"


rule render_train:
    input:
        prepared=rules.render_prepare.output.prepared,
        shape_ckpt=asset(config["expression"]["checkpoint"]),
        param_stats=asset("3ddfa_v2/param_mean_std_62d_120x120.pkl"),
    output:
        model=f"{RESULTS}/render/{{subject}}/model.pt",
        loss_csv=f"{RESULTS}/render/{{subject}}/loss.csv",
        loss_png=report(
            f"{RESULTS}/render/{{subject}}/loss.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "loss"},
        ),
        subject_json=f"{RESULTS}/render/{{subject}}/subject.json",
    log:
        f"{LOGS}/render/train/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/train/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: RENDER.get("threads", 2)
    resources:
        gpu=RENDER.get("gpus", 0),
    params:
        render={k: RENDER.get(k) for k in ("model", "train", "box", "device")},
        subject=lambda w: RENDER_SUBJECTS[w.subject],
        ckpt=lambda w: f"{RESULTS}/render/{w.subject}/ckpt/last.pt",
    script:
        "../workflow/scripts/render_train.py"


rule render_outputs:
    input:
        unpack(rpipe.smk_output_inputs(config, RESULTS, clip_file, LAYOUT)),
    output:
        test_render=f"{RESULTS}/render/{{subject}}/test_render.mp4",
        test_gt=f"{RESULTS}/render/{{subject}}/test_gt.mp4",
        test_meta=f"{RESULTS}/render/{{subject}}/test_meta.json",
        val_psnr=f"{RESULTS}/render/{{subject}}/val_psnr.json",
        emotion_switch=f"{RESULTS}/render/{{subject}}/emotion_switch.mp4",
        novel_views=report(
            f"{RESULTS}/render/{{subject}}/novel_views.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "novel views"},
        ),
    log:
        f"{LOGS}/render/outputs/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/outputs/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: RENDER.get("threads", 2)
    resources:
        gpu=RENDER.get("gpus", 0),
    params:
        render=RENDER,
        subject=lambda w: RENDER_SUBJECTS[w.subject],
        files=rpipe.smk_subject_files(config, clip_file),
    script:
        "../workflow/scripts/render_outputs.py"


rule render_driven:
    input:
        unpack(
            rpipe.smk_driven_inputs(config, RESULTS, clip_file, LAYOUT, RENDER_DRIVEN)
        ),
    output:
        test_render=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/test_render.mp4",
        test_gt=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/test_gt.mp4",
        test_meta=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/test_meta.json",
    log:
        f"{LOGS}/render/driven/{{subject}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/render/driven/{{subject}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=r"[^/]+",
    conda:
        "../envs/render.yaml"
    threads: RENDER.get("threads", 2)
    resources:
        gpu=RENDER.get("gpus", 0),
    params:
        render=RENDER,
        subject=lambda w: RENDER_SUBJECTS[w.subject],
        files=rpipe.smk_subject_files(config, clip_file),
        pipeline={
            k: config.get(k)
            for k in ("features", "preprocess", "results_dir")
            if k in config
        },
    script:
        "../workflow/scripts/render_driven.py"


TARGETS["render"] = [
    f"{RESULTS}/render/{s}/{f}"
    for s in RENDER_SUBJECTS
    for f in (
        "val_psnr.json",
        "loss.png",
        "emotion_switch.mp4",
        "novel_views.png",
        "masks.png",
    )
] + [
    f"{RESULTS}/render/{s}/driven/{v}/test_meta.json"
    for s, models in RENDER_DRIVEN.items()
    for v in models
]
