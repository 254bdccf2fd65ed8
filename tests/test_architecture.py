"""The package graph runs one way, in the order ARCHITECTURE.md states, and the import cycles it would
hide inside functions are not there either: an import stays inside a function only to defer a heavy or
optional module, and says so (``# deferred: <reason>``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medssl"
DEFERRED = re.compile(r"#\s*deferred:\s*\S")


def stated_order() -> list[str]:
    """The ``Import order:`` line of ARCHITECTURE.md, e.g. `errors` -> `utils` -> ..."""
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        if line.startswith("Import order:"):
            return re.findall(r"`(\w+)`", line)
    raise AssertionError("ARCHITECTURE.md has no 'Import order:' line")


def medssl_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level medssl module)`` for every import in ``path``, module- or function-level."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "medssl" else [f"medssl.{a.name}" for a in node.names]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names
                  if name.startswith("medssl.") and name.split(".")[1] != "__version__"]
    return found


def test_every_package_is_placed_in_the_stated_order() -> None:
    order = stated_order()
    packages = {p.stem for p in PACKAGE.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert packages == set(order), (f"ARCHITECTURE.md's order misses {packages - set(order)} "
                                    f"or names {set(order) - packages}")


def test_no_package_imports_one_above_it() -> None:
    order = stated_order()
    rank = {name: i for i, name in enumerate(order)}
    upward = []
    for path in PACKAGE.rglob("*.py"):
        source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        for line, target in medssl_imports(path):
            if target != source and rank[target] > rank[source]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({source} imports {target})")
    assert not upward, "imports running up ARCHITECTURE.md's order:\n" + "\n".join(upward)


def test_the_checker_sees_a_function_level_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from medssl.pipelines.common import build_head\n    import medssl.engine\n")
    assert medssl_imports(module) == [(2, "pipelines"), (3, "engine")]


def undeferred_imports(path: Path) -> list[int]:
    """Lines of the function-level imports in ``path`` that give no ``# deferred: <reason>``: on one of
    the import's own lines, or in the comment lines just above the run of consecutive imports it is in."""
    lines = path.read_text().splitlines()
    missing, seen = [], set()
    for func in ast.walk(ast.parse(path.read_text())):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            for block in (getattr(node, field, None) for field in ("body", "orelse", "finalbody")):
                if not isinstance(block, list):
                    continue
                run_reason = False
                for i, stmt in enumerate(block):
                    if not isinstance(stmt, (ast.Import, ast.ImportFrom)) or id(stmt) in seen:
                        continue
                    seen.add(id(stmt))
                    if i == 0 or not isinstance(block[i - 1], (ast.Import, ast.ImportFrom)):
                        above, k = [], stmt.lineno - 2
                        while k >= 0 and lines[k].lstrip().startswith("#"):
                            above.append(lines[k])
                            k -= 1
                        run_reason = any(DEFERRED.search(line) for line in above)
                    own = lines[stmt.lineno - 1:stmt.end_lineno]
                    if not run_reason and not any(DEFERRED.search(line) for line in own):
                        missing.append(stmt.lineno)
    return sorted(missing)


def test_every_function_level_import_says_why_it_is_deferred() -> None:
    missing = [f"{path.relative_to(ROOT)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
               for line in undeferred_imports(path)]
    assert not missing, ("function-level imports without a '# deferred: <reason>' comment; import them at "
                         "module level, or say which heavy or optional import waits:\n" + "\n".join(missing))


def test_the_checker_sees_an_import_deferred_without_a_reason(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import json\n"
        "\n"
        "\n"
        "def f() -> None:\n"
        "    # deferred: slow import\n"
        "    import a\n"
        "    import b\n"
        "    x = 1\n"
        "    import c\n"
        "    import d  # deferred: optional extra\n"
        "    if x:\n"
        "        from e import g\n"
        "    # deferred:\n"
        "    import h\n"
        "\n"
        "    def inner() -> None:\n"
        "        # a comment that gives no reason\n"
        "        import i\n")
    assert undeferred_imports(module) == [9, 12, 14, 18]
