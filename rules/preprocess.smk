# Preprocessing (paper Sec. IV-A, Appendix C): 25 fps CFR face crops + 16 kHz mono audio.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/samples.parquet                      sample table
#   results/{dataset}/crop/{actor}/{sample}.mp4            square face crop, 25 fps CFR
#   results/{dataset}/crop/{actor}/{sample}.boxes.parquet  per-frame boxes, scores, detected flag, crop box
#   results/{dataset}/audio/{actor}/{sample}.wav           16 kHz mono PCM16 (every sample)
# datasets.<name>.batch: clip -> crop_video + extract_audio per clip; actor -> preprocess_actor
# writes both directories of an actor in one job (emohead_core/layout.py, batch.py).
# Input functions: emohead_core/preprocess/plan.py (PLANS.preprocess).
PREPROCESS = PLANS.preprocess


rule fetch_asset:
    output:
        f"{RESOURCES}/assets/{{name}}",
    log:
        f"{LOGS}/preprocess/fetch_asset/{{name}}.log",
    benchmark:
        f"{BENCH}/preprocess/fetch_asset/{{name}}.tsv"
    wildcard_constraints:
        name=alternation(ASSET_MANIFEST),
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
        PREPROCESS.table_inputs,
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
        spec=PREPROCESS.dataset_spec,
        resources=RESOURCES,
    script:
        "../workflow/scripts/preprocess_sample_table.py"


rule crop_video:
    input:
        video=PREPROCESS.video_of,
        onnx=rules.export_faceboxes_onnx.output[0],
    output:
        video=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.mp4",
        boxes=f"{RESULTS}/{{dataset}}/crop/{{actor}}/{{sample}}.boxes.parquet",
    log:
        f"{LOGS}/preprocess/crop_video/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/preprocess/crop_video/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/preprocess.yaml"
    threads: config["preprocess"]["threads"]
    params:
        crop_size=PREPROCESS.crop_size,
        opts=config["preprocess"],
    script:
        "../workflow/scripts/preprocess_crop_video.py"


rule extract_audio:
    input:
        unpack(PREPROCESS.audio_inputs),
    output:
        f"{RESULTS}/{{dataset}}/audio/{{actor}}/{{sample}}.wav",
    log:
        f"{LOGS}/preprocess/extract_audio/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/preprocess/extract_audio/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    params:
        sample_rate=config["preprocess"]["sample_rate"],
        fps=config["preprocess"]["fps"],
    script:
        "../workflow/scripts/preprocess_extract_audio.py"


# One job per actor: crops + boxes of the video samples and wavs of every sample.
rule preprocess_actor:
    input:
        unpack(PREPROCESS.actor_sources),
        onnx=rules.export_faceboxes_onnx.output[0],
    output:
        crop=directory(f"{RESULTS}/{{dataset}}/crop/{{actor}}"),
        audio=directory(f"{RESULTS}/{{dataset}}/audio/{{actor}}"),
    log:
        f"{LOGS}/preprocess/preprocess_actor/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/preprocess/preprocess_actor/{{dataset}}/{{actor}}.tsv"
    wildcard_constraints:
        dataset=alternation(ACTOR_DATASETS),
    conda:
        "../envs/preprocess.yaml"
    threads: config["preprocess"]["threads"]
    resources:
        runtime=batch_runtime(SAMPLES, 0.2),
    params:
        clips=PREPROCESS.actor_clips,
        crop_size=PREPROCESS.crop_size,
        opts=config["preprocess"],
        sample_rate=config["preprocess"]["sample_rate"],
        fps=config["preprocess"]["fps"],
    script:
        "../workflow/scripts/preprocess_actor.py"


TARGETS["preprocess"] = PREPROCESS.targets()
