rule prepare:
    output:
        directory(paths.data_dir("{dataset}")),
    params:
        dataset=dataset_params,
    log:
        log_path("prepare", "{dataset}"),
    shell:
        "shpeft prepare --dataset {wildcards.dataset}{PARAMS} --log {log}"
