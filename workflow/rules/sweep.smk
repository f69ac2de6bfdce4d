# Sweeps (shpeft/sweeps.py): a sparse method's mask rebuilt with `budget` or `rho` at each value,
# retrained per dataset and seed, then one table and figure per sweep.


rule sweep_mask:
    input:
        paths.importance_dir("{dataset}"),
    output:
        mask=paths.sweep_mask_file("{sweep}", "{value}", "{dataset}"),
        stats=paths.sweep_mask_stats("{sweep}", "{value}", "{dataset}"),
    log:
        log_path("sweep_mask", "{sweep}", "{value}", "{dataset}"),
    conda:
        CONDA_ENV
    params:
        mask=sweep_mask_params,
    shell:
        "shpeft mask --dataset {wildcards.dataset} --sweep {wildcards.sweep}={wildcards.value}"
        " --log {log}"


rule sweep_finetune:
    input:
        data=paths.data_dir("{dataset}"),
        backbone=paths.backbone_dir(),
        mask=paths.sweep_mask_file("{sweep}", "{value}", "{dataset}"),
    output:
        directory(paths.sweep_run_dir("{sweep}", "{value}", "{dataset}", "{seed}")),
    log:
        log_path("sweep_finetune", "{sweep}", "{value}", "{dataset}", "seed{seed}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=1,
        runtime=config["resources"]["finetune"]["runtime"],
        mem_mb=config["resources"]["finetune"]["mem_mb"],
    params:
        method=sweep_method_params,
        finetune=config["finetune"],
        backbone=config["backbone"],
    shell:
        "shpeft finetune --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --sweep {wildcards.sweep}={wildcards.value} --log {log}"


rule sweep:
    input:
        sweep_run_dirs,
    output:
        directory(paths.sweep_summary_dir("{sweep}")),
    log:
        log_path("sweep", "{sweep}"),
    conda:
        CONDA_ENV
    params:
        sweep=lambda wildcards: config["sweeps"][wildcards.sweep],
        stats=config.get("stats", {}),
    shell:
        "shpeft sweep --name {wildcards.sweep} --log {log}"
