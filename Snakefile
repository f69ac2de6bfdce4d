# shpeft workflow: prepare -> backbone -> score -> mask -> finetune (dataset x method x seed)
# -> aggregate, figures, sweeps -> report.
# Every rule runs one `shpeft <step>` command; dvc.yaml runs the same commands.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    input:
        importance_dirs(),
        mask_files(),
        paths.tables_dir(),
        paths.metrics_file(),
        paths.figures_dir(),
        sweep_summaries(),
        paths.report_dir(),


include: "workflow/rules/prepare.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/report.smk"
