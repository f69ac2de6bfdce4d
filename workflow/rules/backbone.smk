rule backbone:
    output:
        directory(paths.backbone_dir()),
    log:
        log_path("backbone"),
    conda:
        CONDA_ENV
    threads: workflow.cores
    resources:
        gpu=1,
        runtime=config["resources"]["backbone"]["runtime"],
        mem_mb=config["resources"]["backbone"]["mem_mb"],
    params:
        backbone=config["backbone"],
    shell:
        "shpeft backbone --log {log}"
