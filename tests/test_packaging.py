"""Packaging: every package folder is mapped in pyproject.toml, the CLI runs, the demo works."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDER_OF = {"tcomp.ir": "ir", "tcomp.passes": "passes", "tcomp.tools": "tools"}


def _folder(package: str) -> pathlib.Path:
    for prefix, folder in FOLDER_OF.items():
        if package == prefix or package.startswith(prefix + "."):
            return ROOT / folder / package[len(prefix) + 1:].replace(".", "/")
    return ROOT / package.replace(".", "/")


def test_every_package_folder_is_listed():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for top, package in (("tcomp", "tcomp"), ("ir", "tcomp.ir"), ("passes", "tcomp.passes"), ("tools", "tcomp.tools")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([package] + list(rel.parts)))
    assert found == listed, f"unlisted: {found - listed}, stale: {listed - found}"
    for package in listed:
        assert (_folder(package) / "__init__.py").exists(), package


def test_ir_imports_nothing_of_the_rest():
    """tcomp.ir is the bottom layer (DESIGN.md): no import of tcomp.passes/backend/tools."""
    for path in (ROOT / "ir").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not (name == "tcomp" or name.startswith("tcomp.") and not name.startswith("tcomp.ir")), \
                    f"{path} imports {name}"


def test_cli_demo_quick_runs():
    out = subprocess.run([sys.executable, "-m", "tcomp.tools.cli", "demo", "--quick"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "= dot(" in out.stdout  # the IR was printed
    assert "MLP test accuracy" in out.stdout


def test_cli_dump_traced():
    out = subprocess.run([sys.executable, "-m", "tcomp.tools.cli", "dump", "--stage", "traced"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "tanh" in out.stdout
