# Audio-expression module (paper Sec. III-A/B/D, Appendix C/D): train per dataset x variant
# (ablations are config variants, audio2exp.variants / run_variants), evaluate the test-split
# RMSE of alpha (Table VI) against a constant-mean predictor.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/audio2exp/{variant}/model.pt      trained module + input stats + w_z
#   results/{dataset}/audio2exp/{variant}/loss.csv|png  loss curves (eq. 13)
#   results/{dataset}/audio2exp/{variant}/ckpt/         checkpoints (exact resume on rerun)
#   results/{dataset}/audio2exp/{variant}/eval.json     test RMSE, constant-mean RMSE
#   results/{dataset}/audio2exp/inputs.json             manifest of the feature/expression files
#     (rule audio2exp_inputs, once per dataset: train/evaluate depend on it instead of on every
#     per-clip file, which kept 26 jobs x 4 files per clip in the DAG; bench/bench_dag.py)
# Input functions: emohead_core/audio2exp/plan.py (PLANS.audio2exp).
AUDIO2EXP = PLANS.audio2exp


rule audio2exp_inputs:
    input:
        unpack(AUDIO2EXP.manifest_inputs),
    output:
        manifest=AUDIO2EXP.manifest_path("{dataset}"),
    log:
        f"{LOGS}/audio2exp/inputs/{{dataset}}.log",
    benchmark:
        f"{BENCH}/audio2exp/inputs/{{dataset}}.tsv"
    localrule: True
    conda:
        "../envs/audio2exp.yaml"
    threads: 1
    params:
        files=AUDIO2EXP.manifest_files,
    script:
        "../workflow/scripts/audio2exp_inputs.py"


rule audio2exp_train:
    input:
        unpack(AUDIO2EXP.job_inputs),
    output:
        model=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/model.pt",
        loss_csv=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/loss.csv",
        loss_png=report(
            f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/loss.png",
            caption="../workflow/report/audio2exp_loss.rst",
            category="Audio-to-expression",
            labels={"dataset": "{dataset}", "variant": "{variant}", "plot": "loss"},
        ),
    log:
        f"{LOGS}/audio2exp/train/{{dataset}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/audio2exp/train/{{dataset}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=r"[A-Za-z0-9_.\-]+",
    conda:
        "../envs/audio2exp.yaml"
    threads: config["audio2exp"]["threads"]
    params:
        section=AUDIO2EXP.section,
        results=PLANS.results_dir,
    script:
        "../workflow/scripts/audio2exp_train.py"


rule audio2exp_evaluate:
    input:
        unpack(AUDIO2EXP.job_inputs),
        model=rules.audio2exp_train.output.model,
    output:
        eval=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/eval.json",
    log:
        f"{LOGS}/audio2exp/evaluate/{{dataset}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/audio2exp/evaluate/{{dataset}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=r"[A-Za-z0-9_.\-]+",
    conda:
        "../envs/audio2exp.yaml"
    threads: 1
    params:
        section=AUDIO2EXP.section,
        results=PLANS.results_dir,
    script:
        "../workflow/scripts/audio2exp_evaluate.py"


TARGETS["audio2exp"] = AUDIO2EXP.targets()
