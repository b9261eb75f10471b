"""The floor plan holds: no import circle, small root modules, the harness apart from the product."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hsanomaly"
ROOT_MODULE_LINES = 250


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _eager(tree):
    """The statements a module runs when it is imported: not those in functions, nor those
    under ``if TYPE_CHECKING:``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def imports(path, modules, eager=False):
    """The hsanomaly modules ``path`` imports (at any depth, lazy imports included; with
    ``eager``, those its import runs)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text())
    for node in _eager(tree) if eager else ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def graph():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, paths) for name, path in paths.items()}


def test_no_import_circle_between_modules():
    edges = graph()
    # a package's __init__ re-exporting its children is not a circle: drop child -> own package
    for name in edges:
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_root_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert all(n <= ROOT_MODULE_LINES for n in sizes.values()), sizes


def reachable(edges, start):
    """The modules ``start`` imports, directly or through others (lazy imports included), and
    through the packages above each (their ``__init__`` runs first, its eager imports)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        parents = [module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)]
        for target in set().union(edges[module], *(imports(paths[p], paths, eager=True)
                                                   for p in parents)) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_product_never_imports_the_research_harness_or_training_when_scoring():
    """Through any chain of imports: a direct-edge check passed a scorer that would import the
    quick model's module, which imports training."""
    edges = graph()
    product = [m for m in edges if not m.startswith(("hsanomaly.experiments", "hsanomaly.cli"))]
    assert not [m for m in product
                if any(t.startswith("hsanomaly.experiments") for t in reachable(edges, m))]
    scoring = ("hsanomaly.scorers", "hsanomaly.engine", "hsanomaly.latent", "hsanomaly.model")
    for module in (m for m in edges if m.startswith(scoring)):
        assert not any(t.startswith("hsanomaly.training") for t in reachable(edges, module)), module


def test_every_dotted_name_in_the_package_text_exists():
    """Messages and docstrings send users to ``hsanomaly.x.y``: each must resolve (an error
    told users to load a bundle with ``hsanomaly.load_bundle``, which does not exist)."""
    import importlib
    import re

    def resolves(dotted):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                if not hasattr(found, attr):
                    return False
                found = getattr(found, attr)
            return True
        return False

    # (a name running on into a hyphen is a config key, such as hsanomaly.worker-wait)
    named = re.compile(r"\bhsanomaly(?:\.[A-Za-z_]\w*)+(?![\w-])")
    missing = {(path.name, name) for path in PACKAGE.rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               for name in named.findall(node.value) if not resolves(name)}
    assert not missing


def test_the_front_door_and_the_command_line_load_nothing_heavy_until_used():
    """``import hsanomaly`` loaded the whole library (rasterio, numpy, the training package)
    in about 0.2 s before the command line could take an interrupt: a Ctrl-C then printed a
    traceback, a SIGTERM ended it without a word. Each name now loads on first use."""
    import subprocess
    import sys

    heavy = ("numpy", "rasterio", "hsanomaly.api", "hsanomaly.training", "hsanomaly.io")
    code = ("import sys, hsanomaly, hsanomaly.cli; "
            f"print([m for m in {heavy!r} if m in sys.modules]); "
            "print(hsanomaly.Detector.__module__, hsanomaly.model.__name__, hsanomaly.SCORES[0])")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines == ["[]", "hsanomaly.detector hsanomaly.model rx"]
    # the package's modules are its attributes from the first moment, as they were
    code = ("import hsanomaly; print(hsanomaly.defaults.TILE, hsanomaly.scorers.SCORES[0], "
            "hsanomaly.io.ArraySource.__name__, hasattr(hsanomaly, 'nope'))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["256", "rx", "ArraySource", "False"]
