# EmoHead pipeline: raw emotional talking-face videos -> person-specific, emotion-controllable
# talking head -> the paper's tables. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# Every stage registers its final targets in TARGETS[stage] (a list of paths).
TARGETS = {}


include: "rules/common.smk"
include: "rules/preprocess.smk"
include: "rules/expression.smk"
include: "rules/features.smk"
include: "rules/audio2exp.smk"
include: "rules/render.smk"
include: "rules/metrics.smk"
include: "rules/targets.smk"
include: "rules/cluster.smk"


rule all:
    default_target: True
    input:
        [p for stage in TARGETS.values() for p in stage],
