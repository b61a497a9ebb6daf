# Expression extraction (paper Sec. III-B, Appendix A) and emotion hyperplanes (Appendix B).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   resources/onnx/3ddfa_<arch>.onnx                     3DDFA_V2 MobileNet regressor (cached asset)
#   results/{dataset}/expression/{sample}.parquet        per-frame pose/shape/exp, landmarks, MAR
#                                                        (columns: emohead_core/expression/schema.py)
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


rule expression_extract:
    input:
        video=f"{RESULTS}/{{dataset}}/crop/{{sample}}.mp4",
        checkpoint=asset(EXPR["checkpoint"]),
        stats=asset("3ddfa_v2/param_mean_std_62d_120x120.pkl"),
        bfm=asset(EXPR["bfm"]),
        onnx=EXPR_ONNX,
        detector=rules.export_faceboxes_onnx.output[0],
    output:
        f"{RESULTS}/{{dataset}}/expression/{{sample}}.parquet",
    log:
        f"{LOGS}/expression/extract/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/expression/extract/{{dataset}}/{{sample}}.tsv"
    conda:
        "../envs/expression.yaml"
    threads: EXPR["threads"]
    params:
        opts=EXPR,
    script:
        "../workflow/scripts/expression_extract.py"


rule expression_hyperplanes:
    input:
        samples=f"{RESULTS}/{{dataset}}/samples.parquet",
        expression=lambda w: expr_smk.hyperplane_expression(
            config, SAMPLES, RESULTS, w.dataset, w.actor
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
    script:
        "../workflow/scripts/expression_hyperplanes.py"


TARGETS["expression"] = expr_smk.targets(config, SAMPLES, RESULTS, video_samples)
