rule finetune:
    input:
        data=paths.data_dir("{dataset}"),
        backbone=paths.backbone_dir(),
    output:
        directory(paths.run_dir("{dataset}", "{method}", "{seed}")),
    params:
        method=method_params,
        finetune=config["finetune"],
        backbone=config["backbone"],
    log:
        log_path("finetune", "{dataset}", "{method}", "seed{seed}"),
    threads: 1
    resources:
        gpu=1,
    shell:
        "shpeft finetune --dataset {wildcards.dataset} --method {wildcards.method}"
        " --seed {wildcards.seed}{PARAMS} --log {log}"
