rule aggregate:
    input:
        run_dirs(),
    output:
        tables=directory(paths.tables_dir()),
        metrics=paths.metrics_file(),
    params:
        grid=config["grid"],
        seeds=config["seeds"],
    log:
        log_path("aggregate"),
    shell:
        "shpeft aggregate{PARAMS} --log {log}"


rule figures:
    input:
        paths.tables_dir(),
    output:
        directory(paths.figures_dir()),
    log:
        log_path("figures"),
    shell:
        "shpeft figures{PARAMS} --log {log}"
