# Preprocessing (paper Sec. IV-A, Appendix C): 25 fps CFR face crops + 16 kHz mono audio.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/samples.parquet              sample table
#   results/{dataset}/crop/{sample}.mp4            square face crop, 25 fps CFR
#   results/{dataset}/crop/{sample}.boxes.parquet  per-frame boxes, scores, detected flag, crop box
#   results/{dataset}/audio/{sample}.wav           16 kHz mono PCM16 (every sample)
rule fetch_asset:
    output:
        f"{RESOURCES}/assets/{{name}}",
    log:
        f"{LOGS}/preprocess/fetch_asset/{{name}}.log",
    benchmark:
        f"{BENCH}/preprocess/fetch_asset/{{name}}.tsv"
    wildcard_constraints:
        name=_alternation(ASSET_MANIFEST),
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    script:
        "../workflow/scripts/preprocess_fetch_asset.py"


rule export_faceboxes_onnx:
    input:
        weights=asset("3ddfa_v2/FaceBoxesProd.pth"),
    output:
        f"{RESOURCES}/onnx/faceboxes.onnx",
    log:
        f"{LOGS}/preprocess/export_faceboxes_onnx.log",
    benchmark:
        f"{BENCH}/preprocess/export_faceboxes_onnx.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    script:
        "../workflow/scripts/preprocess_export_onnx.py"


rule sample_table:
    input:
        _table_inputs,
    output:
        f"{RESULTS}/{{dataset}}/samples.parquet",
    log:
        f"{LOGS}/preprocess/sample_table/{{dataset}}.log",
    benchmark:
        f"{BENCH}/preprocess/sample_table/{{dataset}}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        resources=RESOURCES,
    script:
        "../workflow/scripts/preprocess_sample_table.py"


rule crop_video:
    input:
        video=_video_of,
        onnx=rules.export_faceboxes_onnx.output[0],
    output:
        video=f"{RESULTS}/{{dataset}}/crop/{{sample}}.mp4",
        boxes=f"{RESULTS}/{{dataset}}/crop/{{sample}}.boxes.parquet",
    log:
        f"{LOGS}/preprocess/crop_video/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/preprocess/crop_video/{{dataset}}/{{sample}}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    params:
        crop_size=lambda wildcards: ehdatasets.crop_size(
            config["datasets"][wildcards.dataset]
        ),
        opts=config["preprocess"],
    script:
        "../workflow/scripts/preprocess_crop_video.py"


rule extract_audio:
    input:
        unpack(_audio_inputs),
    output:
        f"{RESULTS}/{{dataset}}/audio/{{sample}}.wav",
    log:
        f"{LOGS}/preprocess/extract_audio/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/preprocess/extract_audio/{{dataset}}/{{sample}}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    params:
        sample_rate=config["preprocess"]["sample_rate"],
        fps=config["preprocess"]["fps"],
    script:
        "../workflow/scripts/preprocess_extract_audio.py"


TARGETS["preprocess"] = [
    p
    for ds in SAMPLES
    for p in (
        [f"{RESULTS}/{ds}/samples.parquet"]
        + [f"{RESULTS}/{ds}/crop/{s}.mp4" for s in video_samples(ds)]
        + [f"{RESULTS}/{ds}/crop/{s}.boxes.parquet" for s in video_samples(ds)]
        + [f"{RESULTS}/{ds}/audio/{s}.wav" for s in audio_samples(ds)]
    )
]


# `snakemake preprocess`: only this stage's outputs (`make demo SNAKEMAKE_ARGS=preprocess`).
rule preprocess:
    input:
        TARGETS["preprocess"],
    localrule: True
