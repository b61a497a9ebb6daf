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
from emohead_core.features import pipeline as feat

FEAT_SPECS = feat.encoder_specs(config)
FEAT_AUDIO = [n for n, s in FEAT_SPECS.items() if s.role != "gamma"]
FEAT_TEXT = [n for n, s in FEAT_SPECS.items() if s.role == "gamma"]
FEAT_SET = feat.settings(config)


rule features_prefill:
    input:
        unpack(
            lambda w: feat.smk_prefill_inputs(
                config,
                RESULTS,
                w.dataset,
                w.actor,
                _feature_rows(w.dataset, w.actor),
                w.encoder,
            )
        ),
    output:
        f"{RESULTS}/{{dataset}}/features_prefill/{{encoder}}/{{actor}}.json",
    log:
        f"{LOGS}/features/prefill/{{encoder}}/{{dataset}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/features/prefill/{{encoder}}/{{dataset}}/{{actor}}.tsv"
    wildcard_constraints:
        encoder=_alternation(list(FEAT_SPECS) + ["asr"]),
        dataset=_alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=lambda w: _feature_job_config(w.encoder),
    script:
        "../workflow/scripts/features_prefill.py"


rule features_transcript:
    input:
        unpack(
            lambda w: feat.smk_inputs(
                config,
                RESULTS,
                w.dataset,
                w.sample,
                False,
                w.actor,
                "asr",
            )
        ),
    output:
        f"{RESULTS}/{{dataset}}/transcripts/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/transcript/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/transcript/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        dataset=_alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=feat.smk_job_config(config, RESULTS, asr=True),
    script:
        "../workflow/scripts/features_transcript.py"


rule features_audio:
    input:
        unpack(
            lambda w: feat.smk_inputs(
                config,
                RESULTS,
                w.dataset,
                w.sample,
                bool(sample_row(w.dataset, w.sample)["video_path"]),
                w.actor,
                w.encoder,
            )
        ),
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=_alternation(FEAT_AUDIO),
        dataset=_alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=lambda w: feat.smk_job_config(config, RESULTS, w.encoder),
    script:
        "../workflow/scripts/features_audio.py"


rule features_text:
    input:
        unpack(
            lambda w: feat.smk_inputs(
                config,
                RESULTS,
                w.dataset,
                w.sample,
                bool(sample_row(w.dataset, w.sample)["video_path"]),
                w.actor,
                w.encoder,
            )
        ),
        transcript=rules.features_transcript.output[0],
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{actor}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{actor}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=_alternation(FEAT_TEXT),
        dataset=_alternation(CLIP_DATASETS),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=lambda w: feat.smk_job_config(config, RESULTS, w.encoder),
    script:
        "../workflow/scripts/features_text.py"


# One job per (dataset, actor, step); step features/{encoder} or transcripts.
rule features_actor:
    input:
        unpack(_actor_feature_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/{{step}}/{{actor}}"),
    log:
        f"{LOGS}/features/features_actor/{{dataset}}/{{step}}/{{actor}}.log",
    benchmark:
        f"{BENCH}/features/features_actor/{{dataset}}/{{step}}/{{actor}}.tsv"
    wildcard_constraints:
        dataset=_alternation(ACTOR_DATASETS),
        step=_alternation([f"features/{e}" for e in FEAT_SPECS] + ["transcripts"]),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    resources:
        runtime=batch_runtime(0.1),
    params:
        encoder=_step_encoder,
        cfg=lambda w: _feature_job_config(_step_encoder(w)),
        clips=_actor_feature_clips,
    script:
        "../workflow/scripts/features_actor.py"


TARGETS["features"] = [
    p
    for ds in SAMPLES
    for p in LAYOUT.deps(
        clip_file(ds, kind, s, enc)
        for s in audio_samples(ds)
        for kind, enc in [("features", e) for e in FEAT_SPECS]
        + ([("transcript", None)] if FEAT_TEXT else [])
    )
]
