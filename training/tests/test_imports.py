"""The package's import graph, read from the source (nothing is imported): no module imports itself back through
others, no sub-package depends on one that depends on it, and every command of `python -m purifyd_train` names a
module with a main."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "purifyd_train"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def resolve(importer: str, node: ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads: the module named, or the submodules it imports by name."""
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        base = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("purifyd_train"):
        return []
    named = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
    return named or [target]


def imports(module: str) -> set[str]:
    """Every package module that `module` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom):
            found.update(resolve(module, node))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("purifyd_train"))
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as the list of its nodes (first = last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state and (found := visit(successor)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def unit(module: str) -> str:
    """The sub-package a module belongs to (`evaluation`, `cards`, ...), or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_resolves_to_a_module_of_the_package():
    unresolved = {module: sorted(targets - MODULES.keys()) for module, targets in GRAPH.items() if targets - MODULES.keys()}
    assert unresolved == {}


def test_no_module_imports_itself_through_others():
    assert cycle(GRAPH) == []


def test_no_sub_package_depends_on_one_that_depends_on_it():
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module in ("purifyd_train", "purifyd_train.__main__"):
            continue
        units.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    assert cycle(units) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_every_command_names_a_module_with_a_main():
    tree = ast.parse((PACKAGE / "__main__.py").read_text())
    commands = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMANDS")
    assert {"classifiers", "pairs", "gan", "export", "evaluate", "compare-deepfool", "jpeg-check", "bundle",
            "bundle-card", "export-folder", "robust-train", "robust-export", "robust-evaluate"} <= commands.keys()
    for command, module in commands.items():
        source = MODULES[f"purifyd_train.{module}"].read_text()
        assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(source).body), command
