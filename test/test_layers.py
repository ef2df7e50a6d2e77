"""Imports only go downwards (docs/ARCHITECTURE.md): inside the core, its parts in the order
``CORE_LAYERS`` declares; above the core the ROS adapter; above that the nodes and tools.

Read from the source (every import statement, function-local ones included), so an upward
import fails here even when nothing runs the line that holds it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The core's parts, bottom first: a part may import its own layer and the layers below it.
# One layer may hold several parts that use each other (a set).
CORE_LAYERS: list[set[str]] = [
    {"errors", "locations", "classes", "signals", "distributed"},
    {"geometry", "preprocess", "codec", "entropy_tables", "context_tables", "temporal_context",
     "image_codec",
     "image_decode", "auth", "output_folder", "bags", "host_copy"},
    {"temporal_codec"},  # streams of a per-frame codec (codec, entropy_tables)
    {"metrics", "viz", "sim"},
    {"data"},
    # The network loops over the registered tasks; a task builds its head from the model's
    # blocks: one layer.
    {"backbones", "model", "tasks"},
    {"evaluate", "export"},
    {"plan"},      # profiles and the cost model: numbers only, nothing that runs a model
    {"runtime"},   # what the nodes run (uses plan's cost model for adaptation)
    {"train", "train_entropy"},
    {"cli"},       # the `mtl-split` commands: nothing below imports them
]
# Whole packages above the core, bottom first (the same rule between them).
PACKAGE_LAYERS: list[set[str]] = [
    {"mtl_split_core"},
    {"mtl_split_ros"},
    {"mtl_split_edge", "mtl_split_server", "mtl_split_tools"},
]
# Known upward imports being removed on another branch (the lead drops an entry at merge).
ALLOWED: set[tuple[str, str]] = set()


def _layer(layers: list[set[str]], name: str) -> int | None:
    return next((i for i, layer in enumerate(layers) if name in layer), None)


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports are not used here)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def upward_imports() -> list[str]:
    wrong = []
    packages = {p for layer in PACKAGE_LAYERS for p in layer}
    for package in sorted(packages):
        own_layer = _layer(PACKAGE_LAYERS, package)
        for path in _sources(package):
            rel = path.relative_to(ROOT).as_posix()
            part = path.relative_to(ROOT / package).parts[0].removesuffix(".py")
            for name in _imports(path):
                top = name.split(".")[0]
                target = _layer(PACKAGE_LAYERS, top)
                key = (rel, ".".join(name.split(".")[:2]))
                if target is None or key in ALLOWED:
                    continue
                if target > own_layer:
                    wrong.append(f"{rel} imports {name} (a layer above {package})")
                elif package == top == "mtl_split_core" and "." in name:
                    mine, theirs = _layer(CORE_LAYERS, part), _layer(CORE_LAYERS,
                                                                       name.split(".")[1])
                    if mine is None or theirs is None:
                        wrong.append(f"{rel} imports {name}: add its part to CORE_LAYERS")
                    elif theirs > mine:
                        wrong.append(f"{rel} ({part}) imports {name} (a layer above)")
    return wrong


def test_imports_only_go_downwards():
    wrong = upward_imports()
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_every_part_of_the_core_has_a_layer():
    parts = {p.name.removesuffix(".py") for p in (ROOT / "mtl_split_core").iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py")
             or (p.is_dir() and (p / "__init__.py").exists())}
    declared = {p for layer in CORE_LAYERS for p in layer}
    assert parts == declared, (f"undeclared: {sorted(parts - declared)}, "
                               f"gone: {sorted(declared - parts)}")


@pytest.mark.parametrize("source, imported, expected", [
    ("mtl_split_core/plan/x.py", "mtl_split_core.runtime.device", True),
    ("mtl_split_core/runtime/x.py", "mtl_split_core.plan.link", False),
    ("mtl_split_core/codec.py", "mtl_split_core.cli.main", True),
    ("mtl_split_ros/x.py", "mtl_split_server.node", True),
    ("mtl_split_core/x.py", "mtl_split_ros.outputs", True),
    ("mtl_split_server/x.py", "mtl_split_core.runtime.server", False),
])
def test_the_check_sees_an_upward_import(tmp_path, monkeypatch, source, imported, expected):
    """The checker itself: a planted import is reported exactly when it goes up."""
    package, rest = source.split("/", 1)
    fake = tmp_path / source
    fake.parent.mkdir(parents=True)
    fake.write_text(f"import {imported}\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}._sources",
                        lambda p: [fake] if p == package else [])
    assert bool(upward_imports()) == expected
