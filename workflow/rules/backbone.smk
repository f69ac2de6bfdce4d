rule backbone:
    output:
        directory(paths.backbone_dir()),
    params:
        backbone=config["backbone"],
    log:
        log_path("backbone"),
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        "shpeft backbone{PARAMS} --log {log}"
