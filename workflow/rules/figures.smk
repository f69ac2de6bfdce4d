rule figures:
    input:
        tables=paths.tables_dir(),
        data=data_dirs(),
        masks=mask_files(),
        runs=run_dirs(),
    output:
        directory(paths.figures_dir()),
    log:
        log_path("figures"),
    conda:
        CONDA_ENV
    params:
        grid=config["grid"],
        seeds=config["seeds"],
    shell:
        "shpeft figures --log {log}"
