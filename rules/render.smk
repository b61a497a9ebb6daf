# Expression rendering module (paper Sec. III-C, III-D eqs. 15-16, Appendix C): a person-specific
# expression-conditioned NeRF per subject (config render.subjects: an actor's clips, a list of
# samples, or one video; planning in emohead_core/render/plan.py).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/render/{subject}/prepared/          per-clip frames, masks, backgrounds; cameras, alphas, split
#   results/render/{subject}/masks.png          head masks + landmarks + background per clip (check)
#   results/render/{subject}/model.pt           trained field + occupancy grid (+ ckpt/last.pt: resume)
#   results/render/{subject}/loss.csv|png       loss curves
#   results/render/{subject}/subject.json       clips, split, hyperplanes / audio2exp (for `emohead render`)
#   results/render/{subject}/test/{clip}/test_render.mp4|test_gt.mp4|test_mask.npz|test_meta.json
#       a test clip's test frames rendered from their ground-truth alphas (metrics: ours_gt_alpha);
#       test_mask.npz: the ground-truth frames' head masks (the metrics' head region)
#   results/render/{subject}/driven/{variant}/{clip}/test_render.mp4|test_gt.mp4|test_mask.npz|test_meta.json
#       the same frames rendered from the clip's audio with its emotion tag by audio2exp variant
#       {variant} (the paper's test; metrics method "ours" for main, "ours_{variant}" otherwise)
#   results/render/{subject}/baseline/{baseline}/{clip}/test_render.mp4|test_gt.mp4|test_mask.npz|test_meta.json
#       the same frames as a trivial baseline, encoded like the renders (metrics method
#       baseline_{baseline}): last_frame (the clip's last training frame in each held-out frame's
#       head mask), mean_head (the mean of the clip's training heads, pasted the same way)
#   results/render/{subject}/val_psnr.json      PSNR of the ground-truth-alpha test renders, per clip + mean
#   results/render/{subject}/emotion_switch.mp4 a walk through the subject's emotion tags (eq. 9 + ramps)
#   results/render/{subject}/emotion_control.json|png, intensity_sweep.png
#       emotion control measured: 3DDFA alpha re-extracted from renders edited by tau w_z, scored
#       by the hyperplanes (render/control.py)
#   results/render/{subject}/driven_emotion.json  the audio-driven test renders classified by emotion
#   results/render/{subject}/novel_views.png    yaw strip
# Input functions: emohead_core/render/plan.py (PLANS.render).
RENDER = config["render"]
RPLAN = PLANS.render


wildcard_constraints:
    subject=r"[^/]+",
    clip=r"[^/]+",


rule render_prepare:
    input:
        clips=RPLAN.prepare_inputs,
        bfm=asset(config["expression"]["bfm"]),
    output:
        prepared=directory(f"{RESULTS}/render/{{subject}}/prepared"),
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
        render={k: RENDER[k] for k in ("resolution", "mask", "max_frames")},
        subject=RPLAN.prepare_params,
    script:
        "../workflow/scripts/render_prepare.py"


rule render_train:
    input:
        prepared=rules.render_prepare.output.prepared,
        shape_ckpt=asset(config["expression"]["checkpoint"]),
        param_stats=asset("3ddfa_v2/param_mean_std_62d_120x120.pkl"),
        hyperplanes=RPLAN.train_hyperplanes,
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
    threads: RENDER["threads"]
    resources:
        gpu=RENDER["gpus"],
    params:
        render={k: RENDER[k] for k in ("model", "train", "box", "device")},
        info=RPLAN.subject_info,
        ckpt=lambda w: f"{RESULTS}/render/{w.subject}/ckpt/last.pt",
    script:
        "../workflow/scripts/render_train.py"


rule render_test:
    input:
        unpack(RPLAN.test_clip_inputs),
    output:
        test_render=report(
            f"{RESULTS}/render/{{subject}}/test/{{clip}}/test_render.mp4",
            caption="../workflow/report/render_test.rst",
            category="Rendered videos",
            labels={"subject": "{subject}", "video": "test {clip}, GT alpha"},
        ),
        test_gt=f"{RESULTS}/render/{{subject}}/test/{{clip}}/test_gt.mp4",
        test_mask=f"{RESULTS}/render/{{subject}}/test/{{clip}}/test_mask.npz",
        test_meta=f"{RESULTS}/render/{{subject}}/test/{{clip}}/test_meta.json",
    log:
        f"{LOGS}/render/test/{{subject}}/{{clip}}.log",
    benchmark:
        f"{BENCH}/render/test/{{subject}}/{{clip}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: RENDER["threads"]
    resources:
        gpu=RENDER["gpus"],
    params:
        render=RENDER,
        audio=RPLAN.clip_audio,
    script:
        "../workflow/scripts/render_test.py"


rule render_driven:
    input:
        unpack(RPLAN.driven_inputs),
    output:
        test_render=report(
            f"{RESULTS}/render/{{subject}}/driven/{{variant}}/{{clip}}/test_render.mp4",
            caption="../workflow/report/render_driven.rst",
            category="Rendered videos",
            labels={"subject": "{subject}", "video": "test {clip}, {variant}"},
        ),
        test_gt=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/{{clip}}/test_gt.mp4",
        test_mask=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/{{clip}}/test_mask.npz",
        test_meta=f"{RESULTS}/render/{{subject}}/driven/{{variant}}/{{clip}}/test_meta.json",
    log:
        f"{LOGS}/render/driven/{{subject}}/{{variant}}/{{clip}}.log",
    benchmark:
        f"{BENCH}/render/driven/{{subject}}/{{variant}}/{{clip}}.tsv"
    wildcard_constraints:
        variant=r"[^/]+",
    conda:
        "../envs/render.yaml"
    threads: RENDER["threads"]
    resources:
        gpu=RENDER["gpus"],
    params:
        render=RENDER,
        audio=RPLAN.clip_audio,
        features=RPLAN.clip_features,
        pipeline={k: config[k] for k in ("features", "preprocess", "results_dir")},
    script:
        "../workflow/scripts/render_driven.py"


rule render_baseline:
    input:
        unpack(RPLAN.baseline_inputs),
    output:
        test_render=f"{RESULTS}/render/{{subject}}/baseline/{{baseline}}/{{clip}}/test_render.mp4",
        test_gt=f"{RESULTS}/render/{{subject}}/baseline/{{baseline}}/{{clip}}/test_gt.mp4",
        test_mask=f"{RESULTS}/render/{{subject}}/baseline/{{baseline}}/{{clip}}/test_mask.npz",
        test_meta=f"{RESULTS}/render/{{subject}}/baseline/{{baseline}}/{{clip}}/test_meta.json",
    log:
        f"{LOGS}/render/baseline/{{subject}}/{{baseline}}/{{clip}}.log",
    benchmark:
        f"{BENCH}/render/baseline/{{subject}}/{{baseline}}/{{clip}}.tsv"
    wildcard_constraints:
        baseline=r"[^/]+",
    conda:
        "../envs/render.yaml"
    threads: 1
    params:
        audio=RPLAN.clip_audio,
    script:
        "../workflow/scripts/render_baseline.py"


rule render_summary:
    input:
        RPLAN.summary_inputs,
    output:
        f"{RESULTS}/render/{{subject}}/val_psnr.json",
    log:
        f"{LOGS}/render/summary/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/summary/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: 1
    script:
        "../workflow/scripts/render_summary.py"


rule render_showcase:
    input:
        unpack(RPLAN.showcase_inputs),
        checkpoint=asset(config["expression"]["checkpoint"]),
        onnx=PLANS.expression.onnx,
        detector=rules.export_faceboxes_onnx.output[0],
        bfm=asset(config["expression"]["bfm"]),
    output:
        emotion_switch=report(
            f"{RESULTS}/render/{{subject}}/emotion_switch.mp4",
            caption="../workflow/report/emotion_switch.rst",
            category="Rendered videos",
            labels={"subject": "{subject}", "video": "emotion switch"},
        ),
        novel_views=report(
            f"{RESULTS}/render/{{subject}}/novel_views.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "novel views"},
        ),
        emotion_control=f"{RESULTS}/render/{{subject}}/emotion_control.json",
        emotion_control_png=report(
            f"{RESULTS}/render/{{subject}}/emotion_control.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "emotion control"},
        ),
        intensity_sweep=report(
            f"{RESULTS}/render/{{subject}}/intensity_sweep.png",
            caption="../workflow/report/render.rst",
            category="Renderer",
            labels={"subject": "{subject}", "plot": "intensity sweep"},
        ),
    log:
        f"{LOGS}/render/showcase/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/showcase/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: RENDER["threads"]
    resources:
        gpu=RENDER["gpus"],
    params:
        render=RENDER,
        expression=config["expression"],
    script:
        "../workflow/scripts/render_showcase.py"


# The audio-driven test renders' emotion: 3DDFA re-extracted, classified by the hyperplanes
# (the Emotion control column of the audio-driven row; render/control.py).
rule render_driven_emotion:
    input:
        unpack(RPLAN.driven_emotion_inputs),
        checkpoint=asset(config["expression"]["checkpoint"]),
        onnx=PLANS.expression.onnx,
        detector=rules.export_faceboxes_onnx.output[0],
        bfm=asset(config["expression"]["bfm"]),
    output:
        f"{RESULTS}/render/{{subject}}/driven_emotion.json",
    log:
        f"{LOGS}/render/driven_emotion/{{subject}}.log",
    benchmark:
        f"{BENCH}/render/driven_emotion/{{subject}}.tsv"
    conda:
        "../envs/render.yaml"
    threads: RENDER["threads"]
    params:
        videos=RPLAN.driven_emotion_params,
        expression=config["expression"],
    script:
        "../workflow/scripts/render_driven_emotion.py"


TARGETS["render"] = RPLAN.targets()
