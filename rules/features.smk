# Audio, emotion and text features (paper Sec. III-A eq. 1, Appendix C, Table V) on the
# 25 fps video grid, one Parquet per (clip, encoder); transcripts with word timestamps.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/{dataset}/features/{encoder}/{sample}.parquet  per-frame features (T rows)
#   results/{dataset}/transcripts/{sample}.parquet         ASR words: token, start_s, end_s
#   results/.cache/features/...                            content-addressed store (features.store)
# Encoders: config features.profiles[features.profile].encoders; roles v / e / gamma.
# A job whose outputs Snakemake deleted for a rerun (mtime/params/code triggers) finds its
# result in the store under key = sha256(audio bytes, encoder identity, T) and only re-links it.
from emohead_core.features import pipeline as feat

FEAT_SPECS = feat.encoder_specs(config)
FEAT_AUDIO = [n for n, s in FEAT_SPECS.items() if s.role != "gamma"]
FEAT_TEXT = [n for n, s in FEAT_SPECS.items() if s.role == "gamma"]
FEAT_SET = feat.settings(config)


rule features_transcript:
    input:
        audio=f"{RESULTS}/{{dataset}}/audio/{{sample}}.wav",
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
        unpack(lambda w: feat.smk_inputs(config, SAMPLES, RESULTS, w.dataset, w.sample)),
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
        unpack(lambda w: feat.smk_inputs(config, SAMPLES, RESULTS, w.dataset, w.sample)),
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
        cfg=lambda w: feat.smk_job_config(config, RESULTS, w.encoder, asr=True),
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
