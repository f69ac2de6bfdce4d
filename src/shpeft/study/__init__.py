"""The paper's own evidence, measured on the user's data: what full fine-tuning changed, how
concentrated that change is (sparsity), and whether the weights it moved most are those the
task-specific and task-agnostic importance estimates rank highest (hybridity). The `oracle` step
builds a mask from the change itself; the `study` step writes the tables and figures
(docs/study.md says what each means)."""
