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

# Input functions: emohead_core/expression/plan.py (PLANS.expression).
from emohead_core.expression.plan import HYPERPLANE_FILES

EXPRESSION = PLANS.expression
EXPR = config["expression"]
HYPER = config["hyperplanes"]


rule export_3ddfa_onnx:
    input:
        checkpoint=asset(EXPR["checkpoint"]),
    output:
        EXPRESSION.onnx,
    log:
        f"{LOGS}/expression/export_3ddfa_onnx.log",
    benchmark:
        f"{BENCH}/expression/export_3ddfa_onnx.tsv"
    conda:
        "../envs/expression.yaml"
    threads: 1
    params:
        widen_factor=EXPR["widen_factor"],
    script:
        "../workflow/scripts/expression_export_onnx.py"


# inputs of both extraction rules besides the video(s)
EXPR_MODELS = EXPRESSION.model_inputs(detector=rules.export_faceboxes_onnx.output[0])


rule expression_extract:
    input:
        **EXPR_MODELS,
        video=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.mp4",
        boxes=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.boxes.parquet",
    output:
        f"{RESULTS}/{{dataset}}/expression/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/expression/extract/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/expression/extract/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=alternation(CLIP_DATASETS),
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
        **EXPR_MODELS,
        crop=f"{RESULTS}/{{dataset}}/crop/{{actor}}",
    output:
        directory(f"{RESULTS}/{{dataset}}/expression/{{actor}}"),
    log:
        f"{LOGS}/expression/expression_actor/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/expression/expression_actor/{{dataset}}/{{actor}}.tsv"
    wildcard_constraints:
        dataset=alternation(ACTOR_DATASETS),
    conda:
        "../envs/expression.yaml"
    threads: EXPR["threads"]
    resources:
        runtime=batch_runtime(SAMPLES, 0.2),
    params:
        opts=EXPR,
        videos=EXPRESSION.actor_videos,
        boxes=EXPRESSION.actor_boxes,
    script:
        "../workflow/scripts/expression_actor.py"


rule expression_hyperplanes:
    input:
        samples=f"{RESULTS}/{{dataset}}/samples.parquet",
        expression=EXPRESSION.hyperplane_inputs,
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
            for f in HYPERPLANE_FILES
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
        expression=EXPRESSION.hyperplane_files,
        held_out=EXPRESSION.hyperplane_held_out,
    script:
        "../workflow/scripts/expression_hyperplanes.py"


TARGETS["expression"] = EXPRESSION.targets()
