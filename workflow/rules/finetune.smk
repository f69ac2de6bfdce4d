rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        directory(paths.run_dir("{dataset}", "{method}", "{seed}")),
    log:
        log_path("finetune", "{dataset}", "{method}", "seed{seed}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=1,
        runtime=config["resources"]["finetune"]["runtime"],
        mem_mb=config["resources"]["finetune"]["mem_mb"],
    params:
        method=method_params,
        finetune=config["finetune"],
        backbone=config["backbone"],
    shell:
        "shpeft finetune --dataset {wildcards.dataset} --method {wildcards.method}"
        " --seed {wildcards.seed} --log {log}"
