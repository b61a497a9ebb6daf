# Pages of the Snakemake report (`snakemake --report report.html` after a run; captions in
# workflow/report/): the paper tables as HTML. The plots and videos are marked with report()
# on the outputs of their own rules.
#
# Outputs (the results/ contract, CONTRIBUTING.md):
#   results/tables/{table}.html    Tables I, II, IV, VI (from {table}.md of rule tables)


rule tables_html:
    input:
        f"{RESULTS}/tables/{{table}}.md",
    output:
        report(
            f"{RESULTS}/tables/{{table}}.html",
            caption="../workflow/report/tables.rst",
            category="Paper tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{LOGS}/metrics/tables_html/{{table}}.log",
    benchmark:
        f"{BENCH}/metrics/tables_html/{{table}}.tsv"
    wildcard_constraints:
        table=r"table_[IVX]+",
    localrule: True
    conda:
        "../envs/metrics.yaml"
    threads: 1
    script:
        "../workflow/scripts/report_tables_html.py"


TARGETS["report"] = [
    p.removesuffix(".md") + ".html" for p in rules.tables.output if p.endswith(".md")
]
