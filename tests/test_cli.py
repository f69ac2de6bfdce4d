"""The command line: one subcommand per step of the DAG; user errors are one line, exit status 1."""

from __future__ import annotations

import pytest

from conftest import ROOT, TINY
from shpeft import dag
from shpeft.cli import main, parser

TINY_PARAMS = ["--params", str(ROOT / "params.yaml"), "--params", str(TINY)]


def test_every_step_of_the_dag_is_a_command_taking_its_wildcards():
    commands = parser()._subparsers._group_actions[0].choices
    for step in dag.STEPS.values():
        options = {a.dest for a in commands[step.command]._actions if a.required}
        assert options == set(step.over), step.name


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prepare", "--dataset", "nope"], "no key 'datasets.nope'"),
        (
            ["finetune", "--dataset", "tiny_us", "--method", "dora", "--seed", "0"],
            "no key 'methods.dora'",
        ),
        (
            ["prepare", "--dataset", "tiny_us", "--params", "missing.yaml"],
            "missing.yaml: params file not found",
        ),
    ],
)
def test_user_errors_are_one_line(in_tmp, caplog, capsys, argv, expected):
    if "--params" not in argv:
        argv = [*argv, *TINY_PARAMS]
    assert main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sweep", "--sweep", "width"], "argument --sweep: 'width' is not a sweep (budget|rho)"),
        (["finetune", "--dataset", "x", "--method", "m", "--seed", "abc"], "'abc' is not a seed"),
        (["prepare", "--dataset", "../up"], "argument --dataset: '../up' is not a dataset"),
    ],
)
def test_wildcard_options_take_only_what_the_dag_names(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_log_file_receives_the_error(in_tmp):
    log = in_tmp / "logs" / "x.log"
    main(["prepare", "--dataset", "nope", "--params", str(ROOT / "params.yaml"), "--log", str(log)])
    assert "no key 'datasets.nope'" in log.read_text()
