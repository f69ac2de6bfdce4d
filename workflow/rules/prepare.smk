rule prepare:
    output:
        directory(paths.data_dir("{dataset}")),
    log:
        log_path("prepare", "{dataset}"),
    conda:
        CONDA_ENV
    params:
        dataset=dataset_params,
        files=PARAMS_ARGS,
    shell:
        "shpeft prepare --dataset {wildcards.dataset}{params.files} --log {log}"
