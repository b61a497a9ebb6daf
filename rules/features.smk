# Audio, emotion and text features (paper Sec. III-A eq. 1, Appendix C, Table V) on the
# 25 fps video grid, one Parquet per (clip, encoder); transcripts with word timestamps.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/features/{encoder}/{actor}/{sample}.parquet  per-frame features (T rows)
#   results/{dataset}/transcripts/{actor}/{sample}.parquet         ASR words: token, start_s, end_s
#   results/{dataset}/features_prefill/{encoder}/{actor}.json      per-actor prefill manifests
#   results/.cache/features/...                            content-addressed store (features.store)
# Encoders: config features.profiles[features.profile].encoders; roles v / e / gamma.
# Every result lives in the store under key = sha256(audio bytes, encoder identity, T).
# datasets.<name>.batch: actor -> features_actor, one job per (dataset, actor, encoder) ("asr":
# transcripts) writes the actor's directory, model loaded once. batch: clip -> per-clip jobs;
# with features.prefill = actor, one job per (dataset, actor, encoder) first fills the store
# (model loaded once) and the per-clip jobs only hash and link. A per-clip job whose outputs
# Snakemake deleted for a rerun (params/code/input triggers) likewise finds its key in the
# store and never loads a model.
# Input functions: emohead_core/features/plan.py (PLANS.features).
FEATURES = PLANS.features
FEAT_SET = FEATURES.settings


rule features_prefill:
    input:
        unpack(FEATURES.prefill_inputs),
    output:
        f"{RESULTS}/{{dataset}}/features_prefill/{{encoder}}/{{actor}}.json",
    log:
        f"{LOGS}/features/prefill/{{encoder}}/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/features/prefill/{{encoder}}/{{dataset}}/{{actor}}.tsv"
    wildcard_constraints:
        encoder=alternation(list(FEATURES.specs) + ["asr"]),
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=FEATURES.encoder_job_config,
    script:
        "../workflow/scripts/features_prefill.py"


rule features_transcript:
    input:
        unpack(FEATURES.transcript_inputs),
    output:
        f"{RESULTS}/{{dataset}}/transcripts/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/transcript/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/transcript/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=FEATURES.job_config("asr"),
    script:
        "../workflow/scripts/features_transcript.py"


rule features_audio:
    input:
        unpack(FEATURES.clip_inputs),
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=alternation(FEATURES.audio_encoders),
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=FEATURES.encoder_job_config,
    script:
        "../workflow/scripts/features_audio.py"


rule features_text:
    input:
        unpack(FEATURES.clip_inputs),
        transcript=rules.features_transcript.output[0],
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=alternation(FEATURES.text_encoders),
        dataset=alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=FEATURES.encoder_job_config,
    script:
        "../workflow/scripts/features_text.py"


# One job per (dataset, actor, step); step features/{encoder} or transcripts.
rule features_actor:
    input:
        unpack(FEATURES.actor_batch_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/{{step}}/{{actor}}"),
    log:
        f"{LOGS}/features/features_actor/{{dataset}}/{{step}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/features/features_actor/{{dataset}}/{{step}}/{{actor}}.tsv"
    wildcard_constraints:
        dataset=alternation(ACTOR_DATASETS),
        step=alternation(FEATURES.actor_steps()),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    resources:
        runtime=batch_runtime(SAMPLES, 0.1),
    params:
        encoder=FEATURES.step_encoder,
        cfg=FEATURES.step_job_config,
        clips=FEATURES.actor_batch_clips,
    script:
        "../workflow/scripts/features_actor.py"


TARGETS["features"] = FEATURES.targets()
