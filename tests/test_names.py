"""No stale name: what the README, docs/ and conf/ name (modules and what they define, files,
make targets, config keys, README sections) exists. docs/archive/ is history, kept as it
was written, and is not checked."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
from helpers import compose_config
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
# Config groups and the root nodes whose dotted keys the text may name.
NODES = ("budget_policy", "tuner", "final", "training", "data", "search_space", "mlflow")
NODES += ("distributed", "study", "paths")

MODULE = re.compile(r"(?<![\w.])src(?:\.[A-Za-z_]\w*)+")
FILE = re.compile(r"(?<![\w/.])(?:src|tests|bench|conf|docs)/[\w/.-]*\w\.(?:py|yaml|md|json|png)")
MAKE = re.compile(r"`make ([a-z][\w-]*)")
KEY = re.compile(rf"(?<![\w./-])((?:{'|'.join(NODES)})(?:\.[a-z_]\w*)+)(=?)")
# A file's name (``final.json``), not a key.
EXTENSIONS = (".json", ".md", ".py", ".yaml", ".npz", ".png", ".log")
# The bad input the project refuses, named on purpose.
BAD_INPUT = ROOT / "docs" / "bad-input.md"
SECTION = re.compile(r'README,? "([^"]+)"')


def checked_files() -> list[Path]:
    """The README, docs/ (its archive aside), conf/ and the Makefile."""
    docs = [p for p in (ROOT / "docs").rglob("*.md") if "archive" not in p.parts]
    return [ROOT / "README.md", ROOT / "Makefile", *docs, *(ROOT / "conf").rglob("*.yaml")]


@functools.cache
def _defined(path: Path) -> frozenset[str]:
    """Top-level names a module defines, and ``Class.member`` for its classes' members."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}.{member.name}")
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    names.add(f"{node.name}.{member.target.id}")
                elif isinstance(member, ast.Assign):
                    names.update(f"{node.name}.{t.id}" for t in member.targets if hasattr(t, "id"))
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", 0)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return frozenset(names)


def _module_exists(dotted: str) -> bool:
    """``src.a.b`` is a module or package, or ``src.a.b.name[.member]`` one's definition."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if not base.is_dir() else base / "__init__.py"
        if module.is_file():
            name, *member = parts[cut:][:2] or [""]
            defined = _defined(module)
            if not name:
                return True
            if member and any(d.startswith(f"{name}.") for d in defined):  # a class's member
                return f"{name}.{member[0]}" in defined
            return name in defined
    return False


@functools.cache
def _config_keys() -> frozenset[str]:
    """Every dotted key of the default config and of each option of each config group."""
    keys: set[str] = set()

    def walk(node: object, prefix: str) -> None:
        keys.add(prefix)
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, f"{prefix}.{name}")

    walk(OmegaConf.to_container(compose_config([]), resolve=False), "")
    for group in (ROOT / "conf").iterdir():
        for option in group.glob("*.yaml") if group.is_dir() else []:
            walk(OmegaConf.to_container(OmegaConf.load(option)), f".{group.name}")
    return frozenset(key.lstrip(".") for key in keys)


@functools.cache
def _readme_sections() -> frozenset[str]:
    text = (ROOT / "README.md").read_text()
    return frozenset(m.strip() for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE))


def _make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))


def _keys_named(text: str) -> list[str]:
    """The config keys ``text`` names; ``mlflow.x`` (also the Python package) only as an
    override, ``mlflow.x=``."""
    return [
        key
        for key, assigned in KEY.findall(text)
        if not key.endswith(EXTENSIONS) and (assigned or not key.startswith("mlflow."))
    ]


def _key_exists(key: str) -> bool:
    """A config key, or a module under src/ named from there (``final.stage``)."""
    return key in _config_keys() or _module_exists(f"src.{key}")


def stale_names(text: str) -> list[str]:
    """The names in ``text`` that name nothing in this repository, each with what it is."""
    stale = [f"module {m}" for m in MODULE.findall(text) if not _module_exists(m)]
    stale += [f"file {f}" for f in FILE.findall(text) if not (ROOT / f).exists()]
    stale += [f"make target {t}" for t in MAKE.findall(text) if t not in _make_targets()]
    stale += [f"config key {key}" for key in _keys_named(text) if not _key_exists(key)]
    sections = _readme_sections()
    stale += [f'README section "{s}"' for s in SECTION.findall(text) if s not in sections]
    return stale


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_the_docs_and_configs_use_exists(path):
    stale = stale_names(path.read_text())
    if path == BAD_INPUT:
        stale = [name for name in stale if not name.startswith("config key")]
    assert stale == []


@pytest.mark.parametrize(
    ("planted", "found"),
    [
        ("run `python -m src.study`", "module src.study"),
        ("`src.budget.RunBudget.no_such_rule`", "module src.budget.RunBudget.no_such_rule"),
        ("see tests/test_jax_backend.py", "file tests/test_jax_backend.py"),
        ("then `make bench-repor`", "make target bench-repor"),
        ("`final.budget_share=0.6`", "config key final.budget_share"),
        ('README "Choosing the final stage"', 'README section "Choosing the final stage"'),
    ],
)
def test_a_planted_bad_name_is_found(planted, found):
    assert stale_names(f"Some text, then {planted}, then more.") == [found]


def test_names_that_exist_pass():
    text = (
        "`python -m src.run`, `src.budget.RunBudget.smallest_budget_s`, tests/test_names.py, "
        "`make test`, `tuner.max_trials=12`, `final.from_results=shipped`, "
        "`budget_policy.min_trials`"
    )
    assert stale_names(text) == []


def _comments_and_keys(path: Path) -> tuple[int, int]:
    """Comment lines after the file's header (its leading comment block), and keys."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    body = lines[next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines)) :]
    comments = sum(line.startswith("#") for line in body)
    keys = sum(bool(re.match(r"(- )?[A-Za-z_]\w*:", line)) for line in body)
    return comments, keys


@pytest.mark.parametrize(
    "path", sorted((ROOT / "conf").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_a_config_file_has_no_more_comment_lines_than_keys(path):
    """A line of what and why per key; figures and run stories go to docs/decisions.md."""
    comments, keys = _comments_and_keys(path)
    assert comments <= keys, f"{comments} comment lines for {keys} keys"
