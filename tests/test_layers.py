"""The package's layout is its pipeline: each layer imports only from the layers before it.

An AST walk over every module of ``labelaudit`` (imports inside functions included) checks that no
module reaches forward into a later stage, and that no module grows past ``MAX_LINES``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import labelaudit

PACKAGE = Path(labelaudit.__file__).resolve().parent
# The stages in data-flow order. A module may import from its own layer and the ones above it.
LAYERS = [
    ("_version", "errors", "progress", "atomic"),  # foundations: the version, typed errors, the progress callback, atomic writes
    ("data",),  # 1-2: sources, decode, cache, dataset, the trusted set
    ("training",),  # device, models, augment, the one loop, checkpoints
    ("dynamics",),  # 3: recorders, LIMIT, the stopping rule, the proxy run, pseudo labels
    ("scores",),  # 4: AUL, AUM, LIMIT distance, fusion
    ("noise",),  # 5: mixture, transition, calibration on verified labels
    ("decisions",),  # 6: p -> flags, rank, weights, suggested labels
    ("audit",),  # 7: the run record and the audit folder, written and read
    ("report",),  # report.html, the audit drawn (the scan writes it with the folder)
    ("config",),  # the settings of a scan, parsed once
    ("pipeline",),  # the scan: the stages in order
    ("review",), ("gate",), ("export",), ("robust",), ("demo",),  # consumers of an audit
    ("cli", "__main__", "__init__"),  # the command line and the public API
]
MAX_LINES = 400


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"labelaudit.{module} belongs to no layer: add it to LAYERS in {__file__}")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported labelaudit module) for every import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        package = []
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module + ".").startswith("labelaudit."):
                    base = node.module.split(".")[1:]
                else:
                    continue
            else:
                base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            targets = [base] if base else [[a.name] for a in node.names]
            found += [(node.lineno, ".".join(t)) for t in targets if t]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".", 1)[1]) for a in node.names if a.name.startswith("labelaudit.")]
    return found


def test_every_import_points_to_an_earlier_layer():
    wrong = []
    for name, path in _modules().items():
        if name in ("__init__", "__main__"):
            continue
        own = _layer(name)
        for line, target in _imports(name, path):
            if _layer(target) > own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports labelaudit.{target} "
                             f"(layer {_layer(target)} > {own})")
    assert not wrong, "imports that run against the pipeline:\n" + "\n".join(wrong)


def test_the_checker_sees_a_backward_import(tmp_path):
    """The walk itself: a relative import inside a function is found and resolved."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from ..noise.mixture import fit_noise\n")
    assert _imports("dynamics.mod", fake) == [(2, "noise.mixture")]
    assert _layer("noise.mixture") > _layer("dynamics.mod")


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
