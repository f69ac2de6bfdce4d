rule score:
    input:
        data=paths.data_dir("{dataset}"),
        backbone=paths.backbone_dir(),
    output:
        directory(paths.importance_dir("{dataset}")),
    log:
        log_path("score", "{dataset}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=1,
        runtime=config["resources"]["score"]["runtime"],
        mem_mb=config["resources"]["score"]["mem_mb"],
    params:
        score=config.get("score", {}),
    shell:
        "shpeft score --dataset {wildcards.dataset} --log {log}"
