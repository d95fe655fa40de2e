"""The installed package holds every module: each folder of toolkit/ with Python files is a
package (``find:`` in setup.cfg skips folders without ``__init__.py`` in a normal install)."""

from __future__ import annotations

from conftest import REPO


def test_every_toolkit_folder_with_modules_is_a_package():
    folders = {p.parent for p in (REPO / "toolkit").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").exists())
    assert missing == []


def test_every_bin_entry_point_has_a_cli_module():
    for script in sorted((REPO / "bin").iterdir()):
        text = script.read_text(encoding="utf-8")
        module = text.split("from toolkit.cli.", 1)[1].split(" ", 1)[0]
        assert (REPO / "toolkit" / "cli" / f"{module}.py").exists(), script.name
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_no_source_file_is_ignored_by_git():
    """A .gitignore pattern meant for run folders (``runs/``) once matched ``toolkit/runs/``: the
    package worked here and was missing from every clone."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    sources = [str(p.relative_to(REPO)) for folder in ("toolkit", "tests", "bench", "slurm")
               for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".sh", ".yaml", ".json")
               and "__pycache__" not in p.parts and "out" not in p.parts]
    sources += [str(p.relative_to(REPO)) for p in (REPO / "bin").iterdir()]
    out = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *sources], capture_output=True,
                         text=True)
    assert out.stdout.split() == []
