# shpeft workflow: prepare -> backbone -> score -> mask -> finetune (dataset x method x seed)
# -> aggregate, figures, sweeps -> report. The steps are stated once, in src/shpeft/dag.py:
# every rule runs one `shpeft <step>` command; dvc.yaml (generated) runs the same commands.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    input:
        [str(path) for path in dag.targets(PARAMS)],


include: "workflow/rules/steps.smk"
