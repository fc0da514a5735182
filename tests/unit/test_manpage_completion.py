"""The man page and the shell completion come from the argument parser: the committed
docs/qmpdirty.1 is current, and every command and option completes."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

from qmpdirty.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _gen_man() -> str:
    loader = SourceFileLoader("gen_man", str(ROOT / "scripts" / "gen-man"))
    spec = importlib.util.spec_from_loader("gen_man", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    text: str = module.rendered()
    return text


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_man_page_is_current() -> None:
    assert (ROOT / "docs" / "qmpdirty.1").read_text(encoding="utf-8") == _gen_man(), (
        "docs/qmpdirty.1 is stale: run scripts/gen-man")


def test_man_page_names_every_command_and_option() -> None:
    page = (ROOT / "docs" / "qmpdirty.1").read_text(encoding="utf-8").replace("\\-", "-")
    for name, parser in _commands().items():
        assert f"qmpdirty {name}" in page.replace("\\fR \\fI\\,", " "), name
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page or option in ("-h", "--help"), (name, option)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_names_every_command_and_option(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for name, parser in _commands().items():
        assert name in script, name
        for action in parser._actions:
            for option in action.option_strings:
                assert option in script, (shell, name, option)


def test_bash_completes_top_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    """Source the script in a real bash and ask it what ``qmpdirty top --s`` completes."""
    bash = shutil.which("bash")
    assert bash is not None
    main(["completion", "bash"])
    script = tmp_path / "qmpdirty.bash"
    script.write_text(capsys.readouterr().out, encoding="utf-8")
    probe = (f"source {script}; COMP_WORDS=(qmpdirty top --so); COMP_CWORD=2; "
             "COMP_LINE='qmpdirty top --so'; COMP_POINT=${#COMP_LINE}; "
             "_shtab_qmpdirty; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--sort"]
