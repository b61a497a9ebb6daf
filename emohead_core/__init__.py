"""EmoHead reference implementation: every model and algorithm of the pipeline.

Importable and testable without Snakemake; ``workflow/scripts`` only adapt
``snakemake.input/output/params`` to the functions here.
"""

__version__ = "0.1.0"
