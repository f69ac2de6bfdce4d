rule figures:
    input:
        paths.tables_dir(),
    output:
        directory(paths.figures_dir()),
    log:
        log_path("figures"),
    conda:
        CONDA_ENV
    shell:
        "shpeft figures --log {log}"
