"""The layout holds: the benchmark lives beside the product, not in it; the API's features do
not reach into each other's routes; SQL is written only in db/; modules import each other
without a circle; and nothing in the repository points outside it."""

import ast
import subprocess
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("api", "worker", "db", "vqueue", "migrations")


# What builds SQL; outside db/ a module may hold an engine or a connection, not write a query.
SQL_BUILDERS = {
    "select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "exists",
    "cast", "literal", "literal_column", "bindparam", "union", "tuple_", "column", "table",
}  # fmt: skip


def product_modules() -> dict[str, Path]:
    modules = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_product_module_imports_the_benchmarks() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if name == "benchmarks" or name.startswith("benchmarks.")
    ]
    assert offenders == []


def test_the_wheel_and_the_images_leave_the_benchmarks_out() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_namespace_packages(str(ROOT), include=include)
    assert "api" in packages
    assert "worker" in packages
    assert not [p for p in packages if p.split(".")[0] in {"benchmarks", "tests"}]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY benchmarks" not in dockerfile
    assert "benchmarks" in (ROOT / ".dockerignore").read_text().split()


def test_nothing_in_the_repository_points_outside_it() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".png", ".gguf", ".safetensors"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for needle in ("../shared", "/work/", "/root/"):
            if needle in text and path != Path(__file__).resolve():
                offenders.append(f"{name}: {needle}")
    assert offenders == []


def test_no_route_module_imports_another() -> None:
    routes = {name for name, path in product_modules().items() if path.name.endswith("routes.py")}
    assert len(routes) >= 8
    offenders = [
        f"{name} imports {imported}"
        for name in sorted(routes)
        for imported in imported_modules(product_modules()[name])
        if imported in routes
    ]
    assert offenders == []


def test_sql_is_written_only_in_db() -> None:
    offenders = []
    for name, path in product_modules().items():
        if name.split(".")[0] in {"db", "migrations"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                builders = {alias.name for alias in node.names} & SQL_BUILDERS
                if builders or node.module == "sqlalchemy.dialects.postgresql":
                    offenders.append(f"{name}: from {node.module} import {sorted(builders)}")
    assert offenders == []


def test_the_import_graph_has_no_circle() -> None:
    modules = product_modules()

    def targets(name: str) -> set[str]:
        found = set()
        for imported in imported_modules(modules[name]):
            # `from api.core import auth` names a module through its package.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                found.add(imported)
        return found

    graph = {name: targets(name) for name in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if nxt.count(".") == 0 and nxt in {"api", "worker", "db", "vqueue"}:
                continue  # a package's own __init__ holds nothing but its docstring
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []
