# Metrics and tables (paper Sec. IV-A; Tables I, II, IV, VI). Which clips and which inputs:
# emohead_core/metrics/plan.py (PLANS.metrics: renderer test clips, metrics.pairs, baselines_dir,
# the demo's re-encoded crops, the ground-truth row).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/metrics/reencode/{dataset}/{sample}.mp4          demo stand-in: crop re-encoded at crf
#   results/metrics/clips/{method}/{group}/{clip}.parquet    one row per clip and metric
#   results/metrics/clips/{method}/{group}/{clip}.fid.npz    Inception features (pooled FID)
#   results/metrics/er_baseline/{dataset}.json               ER (3DMM-exp baseline) classifier
#   results/metrics/human/sheet.{csv,html}, key.csv          blind human-evaluation sheet
#   results/tables/table_{I,II,IV,VI}.{md,tex,csv}, summary.csv
#   results/tables/per_clip.{csv,md}                         image metrics per test clip and method
MET = config["metrics"]
MPLAN = PLANS.metrics


rule metrics_reencode:
    input:
        MPLAN.reencode_input,
    output:
        f"{RESULTS}/metrics/reencode/{{dataset}}/{{sample}}.mp4",
    log:
        f"{LOGS}/metrics/reencode/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/metrics/reencode/{{dataset}}/{{sample}}.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: 1
    params:
        crf=MET["reencode"]["crf"],
        fps=MET["fps"],
        crop=MPLAN.crop_file,
    script:
        "../workflow/scripts/metrics_reencode.py"


rule metrics_er_baseline:
    input:
        expression=MPLAN.er_inputs,
    output:
        f"{RESULTS}/metrics/er_baseline/{{dataset}}.json",
    log:
        f"{LOGS}/metrics/er_baseline/{{dataset}}.log",
    benchmark:
        f"{BENCH}/metrics/er_baseline/{{dataset}}.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: 1
    params:
        labels=lambda wildcards: MPLAN.er_train_labels(wildcards.dataset),
        expression=MPLAN.er_files,
        C=MET["er"]["baseline_C"],
    script:
        "../workflow/scripts/metrics_er_baseline.py"


rule metrics_clip:
    input:
        unpack(MPLAN.clip_inputs),
    output:
        rows=f"{RESULTS}/metrics/clips/{{method}}/{{group}}/{{clip}}.parquet",
        fid=f"{RESULTS}/metrics/clips/{{method}}/{{group}}/{{clip}}.fid.npz",
    log:
        f"{LOGS}/metrics/clip/{{method}}/{{group}}/{{clip}}.log",
    benchmark:
        f"{BENCH}/metrics/clip/{{method}}/{{group}}/{{clip}}.tsv"
    wildcard_constraints:
        method=r"[A-Za-z0-9_.\-]+",
        group=r"[A-Za-z0-9_.\-]+",
        clip=r"[A-Za-z0-9_.\-]+",
    conda:
        "../envs/metrics.yaml"
    threads: MET["threads"]
    params:
        row=MPLAN.pair_row,
        metrics=MET,
        results=PLANS.results_dir,
        expression=config["expression"],
    script:
        "../workflow/scripts/metrics_clip.py"


rule metrics_human_sheet:
    input:
        MPLAN.clip_outputs("parquet"),
    output:
        csv=f"{RESULTS}/metrics/human/sheet.csv",
        html=f"{RESULTS}/metrics/human/sheet.html",
        key=f"{RESULTS}/metrics/human/key.csv",
    log:
        f"{LOGS}/metrics/human_sheet.log",
    benchmark:
        f"{BENCH}/metrics/human_sheet.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: 1
    params:
        pairs=MPLAN.pairs.to_dict("records"),
        seed=MET["human"]["seed"],
    script:
        "../workflow/scripts/metrics_human_sheet.py"


rule tables:
    input:
        unpack(MPLAN.table_inputs),
    output:
        MPLAN.table_outputs(),
        [
            report(
                page,
                caption="../workflow/report/tables.rst",
                category="Paper tables",
                labels={"table": table},
            )
            for table, page in MPLAN.table_pages().items()
        ],
        summary=f"{RESULTS}/tables/summary.csv",
        per_clip=f"{RESULTS}/tables/per_clip.csv",
        per_clip_md=f"{RESULTS}/tables/per_clip.md",
    log:
        f"{LOGS}/metrics/tables.log",
    benchmark:
        f"{BENCH}/metrics/tables.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: 1
    params:
        tables=config["tables"],
        datasets=config["datasets"],
        method_notes=MPLAN.method_notes(),
        results=PLANS.results_dir,
    script:
        "../workflow/scripts/metrics_tables.py"


TARGETS["metrics"] = [
    *rules.tables.output,
    *rules.metrics_human_sheet.output,
]
