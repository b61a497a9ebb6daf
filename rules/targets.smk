# One target rule per stage, so a part of the workflow can be run on its own, e.g.
#   snakemake --profile profiles/slurm --configfile config/demo.yaml all_preprocess
# (`--until` cannot express "every preprocessing output": extract_audio reads crop_video's
# boxes). Each stage registered its outputs in TARGETS[stage] (rules/<stage>.smk).
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
            TARGETS[_stage],
        localrule: True
