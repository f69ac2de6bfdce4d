rule prepare:
    output:
        directory(paths.data_dir("{dataset}")),
    log:
        log_path("prepare", "{dataset}"),
    conda:
        CONDA_ENV
    params:
        dataset=dataset_params,
    shell:
        "shpeft prepare --dataset {wildcards.dataset} --log {log}"
