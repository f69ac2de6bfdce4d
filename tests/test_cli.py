"""The command line turns user errors into one line naming the key or file, with exit status 1."""

from __future__ import annotations

import pytest

from conftest import ROOT, TINY
from shpeft.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prepare", "--dataset", "nope"], "datasets: no dataset named 'nope'"),
        (
            ["finetune", "--dataset", "tiny_us", "--method", "dora", "--seed", "0"],
            "methods: no method named 'dora'",
        ),
        (
            ["prepare", "--dataset", "tiny_us", "--params", "missing.yaml"],
            "missing.yaml: params file not found",
        ),
    ],
)
def test_user_errors_are_one_line(in_tmp, caplog, capsys, argv, expected):
    if "--params" not in argv:
        argv = [*argv, "--params", str(ROOT / "params.yaml"), "--params", str(TINY)]
    assert main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_source_in_params_names_the_key(in_tmp, caplog):
    bad = in_tmp / "bad.yaml"
    bad.write_text("datasets: {tiny_us: {source: dicom}}\n")
    assert (
        main(
            [
                "prepare",
                "--dataset",
                "tiny_us",
                "--params",
                str(ROOT / "params.yaml"),
                "--params",
                str(TINY),
                "--params",
                str(bad),
            ]
        )
        == 1
    )
    assert "key 'datasets.tiny_us.source': 'dicom' is not one of" in caplog.text


def test_log_file_receives_the_error(in_tmp):
    log = in_tmp / "logs" / "x.log"
    main(["prepare", "--dataset", "nope", "--params", str(ROOT / "params.yaml"), "--log", str(log)])
    assert "no dataset named 'nope'" in log.read_text()
