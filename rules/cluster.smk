# Execution helpers (issue "Run on a real SLURM cluster"): one target rule per stage, so a
# part of the workflow can be run on its own, e.g.
#   snakemake --profile profiles/slurm --configfile config/demo.yaml all_preprocess
# (`--until` cannot express "every preprocessing output": extract_audio reads crop_video's
# boxes). Included last, after every stage has registered TARGETS[stage].


def _stage_targets(stage):
    return lambda wildcards: TARGETS.get(stage, [])


for _stage in (
    "preprocess",
    "expression",
    "features",
    "audio2exp",
    "render",
    "metrics",
):

    rule:
        name:
            f"all_{_stage}"
        input:
            _stage_targets(_stage),
        localrule: True
