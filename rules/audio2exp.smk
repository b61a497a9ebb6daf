# Audio-expression module (paper Sec. III-A/B/D, Appendix C/D): train per dataset x variant
# (ablations are config variants), evaluate the test-split RMSE of alpha (Table VI) against a
# constant-mean predictor.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/audio2exp/{variant}/model.pt      trained module + input stats + w_z
#   results/{dataset}/audio2exp/{variant}/loss.csv|png  loss curves (eq. 13)
#   results/{dataset}/audio2exp/{variant}/ckpt/         checkpoints (exact resume on rerun)
#   results/{dataset}/audio2exp/{variant}/eval.json     test RMSE, constant-mean RMSE
A2E = config.get("audio2exp", {})


def a2e_datasets():
    names = A2E.get("datasets")
    if names is None:
        names = [
            ds for ds, spec in config["datasets"].items() if spec["kind"] != "folder"
        ]
    return [ds for ds in names if ds in SAMPLES]


def a2e_variants():
    run = A2E.get("run_variants")
    return list(A2E.get("variants", {"main": {}})) if run is None else list(run)


def a2e_section(variant):
    """The config section with only this variant (params changes of other variants do not
    trigger reruns)."""
    variants = A2E.get("variants") or {"main": {}}
    return {**A2E, "variants": {variant: variants.get(variant, {})}}


def _a2e_samples(ds):
    df = SAMPLES[ds]
    return df[df["split"].isin(["train", "test"])]


def _a2e_inputs(wildcards):
    ds = wildcards.dataset
    df = _a2e_samples(ds)
    encoders = sorted(set((A2E.get("features") or {}).values()))
    video = df[df["video_path"] != ""]
    return {
        "samples": f"{RESULTS}/{ds}/samples.parquet",
        "features": [
            f"{RESULTS}/{ds}/features/{enc}/{s}.parquet"
            for enc in encoders
            for s in df["sample_id"]
        ],
        "expression": [
            f"{RESULTS}/{ds}/expression/{s}.parquet" for s in video["sample_id"]
        ],
        "hyperplanes": [
            f"{RESULTS}/{ds}/hyperplanes/{a}/hyperplanes.json"
            for a in sorted(video["actor"].astype(str).unique())
        ],
    }


rule audio2exp_train:
    input:
        unpack(_a2e_inputs),
    output:
        model=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/model.pt",
        loss_csv=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/loss.csv",
        loss_png=f"{RESULTS}/{{dataset}}/audio2exp/{{variant}}/loss.png",
    log:
        f"{LOGS}/audio2exp/train/{{dataset}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/audio2exp/train/{{dataset}}/{{variant}}.tsv"
    wildcard_constraints:
        variant=r"[A-Za-z0-9_.\-]+",
    conda:
        "../envs/audio2exp.yaml"
    threads: A2E.get("threads", 2)
    params:
        results=RESULTS,
        section=lambda wildcards: a2e_section(wildcards.variant),
        out_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/audio2exp/{wildcards.variant}",
    script:
        "../workflow/scripts/audio2exp_train.py"


rule audio2exp_evaluate:
    input:
        unpack(_a2e_inputs),
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
        results=RESULTS,
        section=lambda wildcards: a2e_section(wildcards.variant),
    script:
        "../workflow/scripts/audio2exp_evaluate.py"


TARGETS["audio2exp"] = [
    f"{RESULTS}/{ds}/audio2exp/{v}/{f}"
    for ds in a2e_datasets()
    for v in a2e_variants()
    for f in ("eval.json", "loss.png")
]
