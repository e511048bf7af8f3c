"""The package's layering, read from the source (torchtune-style): lower folders never import higher
ones, only asr_sft/cli parses arguments, nothing imports the CLI or a recipe, and every recipe config
loads with the config loader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from asr_sft.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "asr_sft"

# folder -> asr_sft subpackages it must not import (data flows downwards in this order)
FORBIDDEN = {
    "data": ("corpora", "models", "training", "evaluation", "cli"),
    "corpora": ("models", "training", "evaluation", "cli"),
    "models": ("training", "evaluation", "cli"),
    "evaluation": ("training", "cli"),
    "training": ("cli",),
}
# readers never import writers
READER_WRITER = [("evaluation/hypotheses.py", "asr_sft.evaluation.report"),
                 ("evaluation/scoring.py", "asr_sft.evaluation.report")]


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; `from x import y` gives x and x.y)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_files(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(folder):
    bad = [f"{path.relative_to(REPO)} imports {name}" for path in package_files(folder)
           for name in imports(path)
           if any(name == f"asr_sft.{up}" or name.startswith(f"asr_sft.{up}.") for up in FORBIDDEN[folder])]
    assert not bad, "\n".join(bad)


def test_generic_downloader_knows_no_corpus():
    assert not any(name.startswith("asr_sft.corpora") for name in imports(PACKAGE / "data" / "download.py"))


@pytest.mark.parametrize("reader, writer", READER_WRITER)
def test_readers_do_not_import_writers(reader, writer):
    assert writer not in imports(PACKAGE / reader)


def test_only_the_cli_parses_arguments():
    bad = []
    for path in package_files():
        if PACKAGE / "cli" in path.parents:
            continue
        source = path.read_text(encoding="utf-8")
        if "argparse" in imports(path) or "sys.argv" in source:
            bad.append(str(path.relative_to(REPO)))
    assert not bad, f"argument parsing outside asr_sft/cli: {bad}"


def test_nothing_imports_the_cli_or_recipes():
    bad = [f"{path.relative_to(REPO)} imports {name}" for path in package_files()
           if PACKAGE / "cli" not in path.parents
           for name in imports(path) if name.startswith(("asr_sft.cli", "recipes"))]
    assert not bad, "\n".join(bad)


def test_one_atomic_write_helper():
    """Files are made atomic in asr_sft/atomic.py only: no second mkstemp/rename dance elsewhere."""
    bad = [str(p.relative_to(REPO)) for p in package_files()
           if p.name != "atomic.py" and ("tempfile.mkstemp" in p.read_text(encoding="utf-8")
                                         or "mkdtemp(dir=" in p.read_text(encoding="utf-8"))]
    assert not bad


@pytest.mark.parametrize("config", sorted(REPO.glob("recipes/*/conf/*.toml")), ids=lambda p: p.parent.parent.name)
def test_every_recipe_config_loads(config):
    load_config(config)
