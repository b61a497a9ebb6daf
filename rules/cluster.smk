# Before any job runs (main Snakemake process only; cluster job steps run with --no-hooks):
# lock the results directory for this run (emohead_core.runlock: a second live run on it stops
# here, before Snakemake deletes any output it would re-run), then remove the temp files that jobs killed mid-write left beside the outputs this run is about
# to produce - only those whose writer is gone, never a live job's of a concurrent run
# (emohead_core.io: atomic_path, sweep_stale_temps).
from emohead_core import io as ehio
from emohead_core import runlock as ehrunlock


onstart:
    ehrunlock.hold_results_lock(RESULTS)
    ehio.sweep_stale_temps(
        (f for job in workflow.dag.needrun_jobs() for f in job.output), log=print
    )
