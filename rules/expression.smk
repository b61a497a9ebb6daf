# Expression extraction (paper Sec. III-B, Appendix A) and emotion hyperplanes (Appendix B).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   resources/onnx/3ddfa_<arch>.onnx                     3DDFA_V2 MobileNet regressor (cached asset)
#   results/{dataset}/expression/{actor}/{sample}.parquet  per-frame pose/shape/exp, landmarks, MAR
#                                                        (columns: emohead_core/expression/schema.py)
#   Reads the crop video and (expression.face_boxes: preprocess) its boxes.parquet, whose face
#   boxes seed the 3DDFA fits instead of a second FaceBoxes search of the crop.
#   (datasets.<name>.batch: clip -> expression_extract per clip; actor -> expression_actor)
#   results/{dataset}/hyperplanes/{actor}/               hyperplanes.json|.parquet, accuracy.csv|.md,
#                                                        distances.png, projection.png, cv_accuracy.png

from emohead_core.expression import smk as expr_smk

EXPR = config["expression"]
HYPER = config["hyperplanes"]
EXPR_ONNX = f"{RESOURCES}/onnx/{expr_smk.onnx_name(EXPR['checkpoint'])}"


rule export_3ddfa_onnx:
    input:
        checkpoint=asset(EXPR["checkpoint"]),
    output:
        EXPR_ONNX,
    log:
        f"{LOGS}/expression/export_3ddfa_onnx.log",
    benchmark:
        f"{BENCH}/expression/export_3ddfa_onnx.tsv"
    conda:
        "../envs/expression.yaml"
    threads: 1
    params:
        widen_factor=EXPR.get("widen_factor"),
    script:
        "../workflow/scripts/expression_export_onnx.py"


# inputs of both extraction rules besides the video(s)
EXPR_ASSETS = {
    "checkpoint": asset(EXPR["checkpoint"]),
    "stats": asset("3ddfa_v2/param_mean_std_62d_120x120.pkl"),
    "bfm": asset(EXPR["bfm"]),
    "onnx": EXPR_ONNX,
    "detector": rules.export_faceboxes_onnx.output[0],
}


rule expression_extract:
    input:
        **EXPR_ASSETS,
        video=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.mp4",
        boxes=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.boxes.parquet",
    output:
        f"{RESULTS}/{{dataset}}/expression/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/expression/extract/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/expression/extract/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=_alternation(CLIP_DATASETS),
    conda:
        "../envs/expression.yaml"
    threads: EXPR["threads"]
    params:
        opts=EXPR,
    script:
        "../workflow/scripts/expression_extract.py"


# One job per actor: the expression Parquets of all of the actor's video samples.
rule expression_actor:
    input:
        **EXPR_ASSETS,
        crop=f"{RESULTS}/{{dataset}}/crop/{{actor}}",
    output:
        directory(f"{RESULTS}/{{dataset}}/expression/{{actor}}"),
    log:
        f"{LOGS}/expression/expression_actor/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/expression/expression_actor/{{dataset}}/{{actor}}.tsv"
    wildcard_constraints:
        dataset=_alternation(ACTOR_DATASETS),
    conda:
        "../envs/expression.yaml"
    threads: EXPR["threads"]
    resources:
        runtime=batch_runtime(0.2),
    params:
        opts=EXPR,
        videos=lambda wildcards: {
            s: clip_file(wildcards.dataset, "crop", s)
            for s in actor_samples(wildcards.dataset, wildcards.actor, video=True)
        },
        boxes=lambda wildcards: {
            s: clip_file(wildcards.dataset, "boxes", s)
            for s in actor_samples(wildcards.dataset, wildcards.actor, video=True)
        },
    script:
        "../workflow/scripts/expression_actor.py"


rule expression_hyperplanes:
    input:
        samples=f"{RESULTS}/{{dataset}}/samples.parquet",
        expression=lambda w: LAYOUT.deps(
            expr_smk.hyperplane_expression(
                config, SAMPLES, RESULTS, w.dataset, w.actor
            )
        ),
    output:
        [
            (
                report(
                    f"{RESULTS}/{{dataset}}/hyperplanes/{{actor}}/{f}",
                    caption="../workflow/report/hyperplanes.rst",
                    category="Expression hyperplanes",
                    labels={"dataset": "{dataset}", "actor": "{actor}", "plot": f},
                )
                if f.endswith(".png")
                else f"{RESULTS}/{{dataset}}/hyperplanes/{{actor}}/{f}"
            )
            for f in expr_smk.HYPERPLANE_FILES
        ],
    log:
        f"{LOGS}/expression/hyperplanes/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/expression/hyperplanes/{{dataset}}/{{actor}}.tsv"
    conda:
        "../envs/expression.yaml"
    threads: HYPER["threads"]
    params:
        opts=HYPER,
        expression=lambda w: expr_smk.hyperplane_expression(
            config, SAMPLES, RESULTS, w.dataset, w.actor
        ),
    script:
        "../workflow/scripts/expression_hyperplanes.py"


TARGETS["expression"] = expr_smk.targets(config, SAMPLES, RESULTS, LAYOUT)
