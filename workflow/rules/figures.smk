rule figures:
    input:
        paths.tables_dir(),
    output:
        directory(paths.figures_dir()),
    log:
        log_path("figures"),
    conda:
        CONDA_ENV
    params:
        files=PARAMS_ARGS,
    shell:
        "shpeft figures{params.files} --log {log}"
