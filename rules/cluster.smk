# Execution helpers (issue "Run on a real SLURM cluster"): one target rule per stage, so a
# part of the workflow can be run on its own, e.g.
#   snakemake --profile profiles/slurm --configfile config/demo.yaml all_preprocess
# (`--until` cannot express "every preprocessing output": extract_audio reads crop_video's
# boxes). Included last, after every stage has registered TARGETS[stage].
from emohead_core import execution as ehexec

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
            lambda wildcards, stage=_stage: TARGETS.get(stage, []),
        localrule: True


# Before any job runs (main Snakemake process only; cluster job steps run with --no-hooks):
# remove the temp files that jobs killed mid-write left beside the outputs this run is about
# to produce - only those whose writer is gone, never a live job's of a concurrent run
# (emohead_core.io.atomic_path; see emohead_core/execution.py).
onstart:
    ehexec.sweep_stale_temps(
        (f for job in workflow.dag.needrun_jobs() for f in job.output), log=print
    )
