rule report:
    input:
        tables=paths.tables_dir(),
        figures=paths.figures_dir(),
        sweeps=sweep_summaries(),
        data=data_dirs(),
        importance=importance_dirs(),
        backbone=paths.backbone_dir(),
        runs=run_dirs(),
    output:
        directory(paths.report_dir()),
    log:
        log_path("report"),
    conda:
        CONDA_ENV
    params:
        config=config,
    shell:
        "shpeft report --log {log}"
