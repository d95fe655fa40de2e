"""The README's two commands are the ones CI and users run."""

from __future__ import annotations

import re

from conftest import REPO


def _command_after(marker: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text, flags=re.S)
    assert match, f"README has no bash block after <!-- {marker} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    command = _command_after("test-command")
    assert "pytest" in command and "torch==2.13.0" in command
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_demo_command_installs_torch_first_then_runs_bin_demo():
    command = _command_after("demo-command")
    assert command.index("torch==2.13.0") < command.index("pip install -e .")
    assert command.endswith("bin/demo")
    assert (REPO / "bin" / "demo").stat().st_mode & 0o111
