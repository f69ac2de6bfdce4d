# One rule per step of src/shpeft/dag.py, which states each step's command, inputs, outputs and
# params once (dvc.yaml is generated from the same table). `snakemake --list-rules` lists them.


for step in dag.STEPS.values():

    rule:
        name:
            step.name
        input:
            unpack(step_inputs(step)),
        output:
            **step_outputs(step),
        log:
            str(pattern_job(step).log),
        conda:
            CONDA_ENV
        # 0: every core. Snakemake lowers it to --cores locally; a cluster run (which has no
        # --cores) takes each rule's threads from its profile's set-threads.
        threads: step.threads or os.cpu_count()
        resources:
            **step_resources(step),
        params:
            sections=step_params(step),
            command=step_command(step),
        shell:
            # The job's own command: a shell expression is evaluated again when the job runs,
            # after this loop, where `step` is the last step.
            "{params.command}"
