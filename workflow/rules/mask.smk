rule mask:
    input:
        paths.importance_dir("{dataset}"),
    output:
        mask=paths.mask_file("{dataset}", "{variant}"),
        stats=paths.mask_stats("{dataset}", "{variant}"),
    log:
        log_path("mask", "{dataset}", "{variant}"),
    conda:
        CONDA_ENV
    params:
        mask=mask_params,
    shell:
        "shpeft mask --dataset {wildcards.dataset} --variant {wildcards.variant} --log {log}"
