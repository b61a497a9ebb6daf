# Audio, emotion and text features (paper Sec. III-A eq. 1, Appendix C, Table V) on the
# 25 fps video grid, one Parquet per (clip, encoder); transcripts with word timestamps.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/features/{encoder}/{sample}.parquet  per-frame features (T rows)
#   results/{dataset}/transcripts/{sample}.parquet         ASR words: token, start_s, end_s
#   results/{dataset}/features_prefill/{encoder}/{actor}.json  per-actor prefill manifests
#   results/.cache/features/...                            content-addressed store (features.store)
# Encoders: config features.profiles[features.profile].encoders; roles v / e / gamma.
# Every result lives in the store under key = sha256(audio bytes, encoder identity, T). With
# features.prefill = actor, one job per (dataset, actor, encoder) loads the model once and
# fills the store for all of the actor's clips; the per-clip jobs then only hash and link.
# A per-clip job whose outputs Snakemake deleted for a rerun (params/code/input triggers)
# likewise finds its key in the store and never loads a model.
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
                [
                    (s, bool(sample_row(w.dataset, s)["video_path"]))
                    for s in audio_samples(w.dataset)
                    if str(sample_row(w.dataset, s)["actor"]) == w.actor
                ],
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
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=lambda w: feat.smk_job_config(
            config,
            RESULTS,
            None if w.encoder == "asr" else w.encoder,
            asr=w.encoder == "asr",
        ),
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
                str(sample_row(w.dataset, w.sample)["actor"]),
                "asr",
            )
        ),
    output:
        f"{RESULTS}/{{dataset}}/transcripts/{{sample}}.parquet",
    log:
        f"{LOGS}/features/transcript/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/transcript/{{dataset}}/{{sample}}.tsv"
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
                str(sample_row(w.dataset, w.sample)["actor"]),
                w.encoder,
            )
        ),
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=_alternation(FEAT_AUDIO),
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
                str(sample_row(w.dataset, w.sample)["actor"]),
                w.encoder,
            )
        ),
        transcript=rules.features_transcript.output[0],
    output:
        f"{RESULTS}/{{dataset}}/features/{{encoder}}/{{sample}}.parquet",
    log:
        f"{LOGS}/features/{{encoder}}/{{dataset}}/{{sample}}.log",
    benchmark:
        f"{BENCH}/features/{{encoder}}/{{dataset}}/{{sample}}.tsv"
    wildcard_constraints:
        encoder=_alternation(FEAT_TEXT),
    conda:
        "../envs/features.yaml"
    threads: FEAT_SET["threads"]
    params:
        cfg=lambda w: feat.smk_job_config(config, RESULTS, w.encoder),
    script:
        "../workflow/scripts/features_text.py"


TARGETS["features"] = [
    p
    for ds in SAMPLES
    for s in audio_samples(ds)
    for p in (
        [f"{RESULTS}/{ds}/features/{enc}/{s}.parquet" for enc in FEAT_SPECS]
        + ([f"{RESULTS}/{ds}/transcripts/{s}.parquet"] if FEAT_TEXT else [])
    )
]
