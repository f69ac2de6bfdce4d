rule aggregate:
    input:
        run_dirs(),
    output:
        tables=directory(paths.tables_dir()),
        metrics=paths.metrics_file(),
    log:
        log_path("aggregate"),
    conda:
        CONDA_ENV
    params:
        grid=config["grid"],
        seeds=config["seeds"],
        stats=config.get("stats", {}),
    shell:
        "shpeft aggregate --log {log}"
