# Metrics and tables (paper Sec. IV-A; Tables I, II, IV, VI).
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/metrics/reencode/{dataset}/{sample}.mp4          demo stand-in: crop re-encoded at crf
#   results/metrics/clips/{method}/{group}/{clip}.parquet    one row per clip and metric
#   results/metrics/clips/{method}/{group}/{clip}.fid.npz    Inception features (pooled FID)
#   results/metrics/er_baseline/{dataset}.json               ER (3DMM-exp baseline) classifier
#   results/metrics/human/sheet.{csv,html}, key.csv          blind human-evaluation sheet
#   results/tables/table_{I,II,IV,VI}.{md,tex,csv}, summary.csv
from emohead_core.metrics import pairs as ehpairs

MET = config.get("metrics", {})
TAB = config.get("tables", {})
FACE_ASSETS = [
    "3ddfa_v2/mb05_120x120.pth",
    "3ddfa_v2/param_mean_std_62d_120x120.pkl",
    "3ddfa_v2/bfm_68_landmarks.npz",
    "3ddfa_v2/FaceBoxesProd.pth",
]


def _render_subjects():
    subj = MET.get("render_subjects")
    if subj is None:
        subj = globals().get("RENDER_SUBJECTS")
    return subj or {}


METRIC_PAIRS = ehpairs.build_pairs(
    MET, config["datasets"], SAMPLES, RESULTS, _render_subjects()
)


def _pair_row(wildcards):
    df = METRIC_PAIRS
    hit = df[
        (df["method"] == wildcards.method)
        & (df["group"] == wildcards.group)
        & (df["clip"] == wildcards.clip)
    ]
    if len(hit) != 1:
        raise ValueError(f"unknown metric clip {wildcards}")
    return hit.iloc[0].to_dict()


def _er_baseline_possible(ds):
    if not (MET.get("er") or {}).get("baseline", True) or ds not in SAMPLES:
        return False
    if "expression" not in TARGETS:
        return False
    df = SAMPLES[ds]
    train = df[(df["split"] == "train") & (df["video_path"] != "")]
    return train["emotion"].nunique() >= 2 and "unknown" not in set(train["emotion"])


def _uses_3ddfa(row):
    backends = (MET.get("lmd") or {}).get("backends") or []
    return "3ddfa" in backends or _er_baseline_possible(row["dataset"])


def _clip_inputs(wildcards):
    row = _pair_row(wildcards)
    inputs = {"generated": row["generated"], "ground_truth": row["ground_truth"]}
    if row["audio"]:
        inputs["audio"] = row["audio"]
    if row["meta"]:
        inputs["meta"] = row["meta"]
    if _uses_3ddfa(row):
        inputs["face_assets"] = [asset(a) for a in FACE_ASSETS]
        inputs["faceboxes"] = f"{RESOURCES}/onnx/faceboxes.onnx"
    if _er_baseline_possible(row["dataset"]):
        inputs["er_baseline"] = f"{RESULTS}/metrics/er_baseline/{row['dataset']}.json"
    return inputs


rule metrics_reencode:
    input:
        f"{RESULTS}/{{dataset}}/crop/{{sample}}.mp4",
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
        crf=(MET.get("reencode") or {}).get("crf", 40),
        fps=MET.get("fps", 25),
    script:
        "../workflow/scripts/metrics_reencode.py"


rule metrics_er_baseline:
    input:
        expression=lambda wildcards: [
            f"{RESULTS}/{wildcards.dataset}/expression/{s}.parquet"
            for s in samples(wildcards.dataset, split="train", video=True)
        ],
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
        labels=lambda wildcards: [
            sample_row(wildcards.dataset, s)["emotion"]
            for s in samples(wildcards.dataset, split="train", video=True)
        ],
        C=(MET.get("er") or {}).get("baseline_C", 1.0),
    script:
        "../workflow/scripts/metrics_er_baseline.py"


rule metrics_clip:
    input:
        unpack(_clip_inputs),
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
    threads: MET.get("threads", 1)
    params:
        row=_pair_row,
        metrics=MET,
        expression=config.get("expression", {}),
        results=RESULTS,
    script:
        "../workflow/scripts/metrics_clip.py"


def _clip_outputs(ext):
    return [
        f"{RESULTS}/metrics/clips/{r.method}/{r.group}/{r.clip}.{ext}"
        for r in METRIC_PAIRS.itertuples()
    ]


def _filled_sheets():
    d = (MET.get("human") or {}).get("filled_dir")
    return (
        sorted(str(p) for p in Path(d).glob("*.csv")) if d and Path(d).is_dir() else []
    )


def _table_inputs(wildcards):
    inputs = {
        "rows": _clip_outputs("parquet"),
        "fid": _clip_outputs("fid.npz"),
        "filled": _filled_sheets(),
    }
    if inputs["filled"]:
        inputs["human_key"] = f"{RESULTS}/metrics/human/key.csv"
    if "a2e_variants" in globals():
        run = set(a2e_variants())
        variants = {
            r.get("variant")
            for r in TAB.get("loss_ablations") or []
            if r.get("variant")
        }
        inputs["rmse"] = [
            f"{RESULTS}/{ds}/audio2exp/{v}/eval.json"
            for ds in a2e_datasets()
            for v in sorted(variants & run)
        ]
    return inputs


def _method_notes():
    notes = {}
    if not _render_subjects():
        notes["ours"] = (
            "n/a: no renderer test clips (results/render/{subject}/test_render.mp4)"
        )
    bdir = MET.get("baselines_dir")
    for m in TAB.get("methods") or []:
        if m not in ("ours", "groundtruth"):
            notes[m] = (
                f"n/a: no videos in {bdir}/{m}/<dataset>/"
                if bdir
                else "n/a: set metrics.baselines_dir"
            )
    if not MET.get("groundtruth_datasets"):
        notes["groundtruth"] = "n/a: set metrics.groundtruth_datasets"
    return notes


TABLE_IDS = ["table_I", "table_II", "table_IV", "table_VI"]


rule metrics_human_sheet:
    input:
        _clip_outputs("parquet"),
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
        pairs=METRIC_PAIRS.to_dict("records"),
        seed=(MET.get("human") or {}).get("seed", 0),
    script:
        "../workflow/scripts/metrics_human_sheet.py"


rule tables:
    input:
        unpack(_table_inputs),
    output:
        [
            f"{RESULTS}/tables/{t}.{ext}"
            for t in TABLE_IDS
            for ext in ("md", "tex", "csv")
        ],
        summary=f"{RESULTS}/tables/summary.csv",
    log:
        f"{LOGS}/metrics/tables.log",
    benchmark:
        f"{BENCH}/metrics/tables.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: 1
    params:
        tables=TAB,
        datasets=config["datasets"],
        results=RESULTS,
        out_dir=f"{RESULTS}/tables",
        method_notes=_method_notes(),
    script:
        "../workflow/scripts/metrics_tables.py"


TARGETS["metrics"] = [
    *rules.tables.output,
    *rules.metrics_human_sheet.output,
]
