"""The package's layers, read from its imports: checks that each module imports only its own layer or lower
ones, that no import circle joins two modules, that no module imports another's ``_private`` name, and that no
function is longer than ``MAX_FUNCTION_LINES`` (tests/test_architecture.py runs them), and the picture in
docs/architecture.md (``--png``).

    python scripts/architecture.py --png docs/img/architecture.png
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "squeezetime"

# Bottom to top: the data flow video -> clips -> tensor -> backend -> labels, then the transports over it.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    ("errors", ("squeezetime.errors", "squeezetime._build_info"), "SqueezeTimeError and its kinds, each with its Refusal; build record"),
    ("video", ("squeezetime.video",), "video -> clips: decode, SampleFrames, views"),
    ("data config", ("squeezetime.data_config",), "frames, interval, views, mean/std"),
    ("models", ("squeezetime.models", "squeezetime.labels", "squeezetime.synthetic"),
     "the network, registry, checkpoints, BN folding, demo model"),
    ("ops", ("squeezetime.ops",), "torch.ops.squeezetime: kernels, fakes, references"),
    ("preprocess", ("squeezetime.preprocess",), "clips -> tensor (squeeze_time)"),
    ("optimize", ("squeezetime.optimize",), "squeezetime.optimize"),
    # the exported graph (folded network, ONNX) sits below the backends: onnxruntime/openvino backends run it
    ("export graph", ("squeezetime.export.graph", "squeezetime.export.exported_program", "squeezetime.export.onnx"),
     "serving graph, torch.export, ONNX"),
    ("backends", ("squeezetime.backends",), "tensor -> logits: eager, optimized (CUDA graphs on GPUs), onnxruntime, openvino, int8; auto"),
    ("classifier", ("squeezetime.classifier", "squeezetime.predict", "squeezetime.timeline", "squeezetime"),
     "load(), Classifier: the one pipeline -> labels; top-k, timeline"),
    ("transports", ("squeezetime.serving", "squeezetime.export", "squeezetime.triton", "squeezetime.batch",
                    "squeezetime.quantize"),
     "Triton, TorchServe, request checks, supervisor, export, batch (local, Ray)"),
    ("bench", ("squeezetime.bench",), "benchmarks: network, peers, video, serving, perf_analyzer, GPU"),
    ("cli", ("squeezetime.cli",), "squeezetime COMMAND"),
]


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix matching ``module`` (None: not ours)."""
    best, best_len = None, -1
    for i, (_, prefixes, _) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(absolute module imported, line) for every import of ``squeezetime`` in the file."""
    name = module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "squeezetime"]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(name, path, node)
            if target.split(".")[0] != "squeezetime":
                continue
            for alias in node.names:  # `from . import ops` imports the module squeezetime.ops
                sub = f"{target}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).is_dir() or (ROOT / (Path(*sub.split(".")))).with_suffix(
                    ".py").is_file()
                found.append((sub if is_module else target, node.lineno))
    return found


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts)


def edges() -> list[tuple[str, int, str]]:
    return [(module_name(p), line, target) for p in sources() for target, line in imports_of(p)]


def violations() -> list[str]:
    """Imports of a higher layer: ``module:line imports target (layer a -> layer b)``."""
    out = []
    for source, line, target in edges():
        a, b = layer_of(source), layer_of(target)
        if a is not None and b is not None and b > a:
            out.append(f"{source}:{line} imports {target} ({LAYERS[a][0]} -> {LAYERS[b][0]})")
    return out


MAX_FUNCTION_LINES = 80


def _resolve(target: str, modules: set[str]) -> str | None:
    """The module of ours an import target names (``pkg.mod.name`` -> ``pkg.mod``)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (at the top or inside functions alike)."""
    modules = {module_name(p) for p in sources()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for source, _, target in edges():
        resolved = _resolve(target, modules)
        if resolved and resolved != source:
            graph[source].add(resolved)
    return graph


def circles() -> list[list[str]]:
    """The import circles: each strongly connected group of two or more modules, sorted (Tarjan)."""
    graph = module_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports() -> list[str]:
    """``module:line imports name from target`` for each ``_private`` name (or module) taken from another module."""
    out = []
    for path in sources():
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for alias in node.names:
                if isinstance(node, ast.Import):
                    target, names = alias.name, alias.name.split(".")
                else:
                    target = _absolute(source, path, node)
                    names = target.split(".") + [alias.name]
                if target.split(".")[0] == "squeezetime" and any(_is_private(n) for n in names):
                    out.append(f"{source}:{node.lineno} imports {alias.name} from {target}")
    return out


def _absolute(source: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    base = package.split(".")
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function or method longer than ``limit`` lines."""
    out = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def draw(path: Path) -> None:
    """Left: the layers, bottom to top. Right: who imports whom (import statements from row to column)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(LAYERS)
    counts = np.zeros((n, n), dtype=int)
    for s, _, t in edges():
        a, b = layer_of(s), layer_of(t)
        if a is not None and b is not None and a != b:
            counts[a, b] += 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.55 * n + 1.5), gridspec_kw={"width_ratios": [1, 1.05]})
    for i, (name, _, what) in enumerate(LAYERS):
        modules = sorted({module_name(p) for p in sources() if layer_of(module_name(p)) == i})
        left.add_patch(plt.Rectangle((0.0, i - 0.4), 4.6, 0.8, facecolor="#dbe9f6", edgecolor="#3a6ea5"))
        left.text(0.1, i + 0.12, f"{name}  ({len(modules)} modules)", fontsize=9.5, weight="bold", va="center")
        left.text(0.1, i - 0.2, what, fontsize=7.5, va="center", color="#333333")
    left.set_xlim(-0.1, 4.7)
    left.set_ylim(-0.6, n - 0.4)
    left.axis("off")
    left.set_title("layers (a layer imports only itself and those below)", fontsize=10)
    shown = np.where(counts > 0, counts, np.nan)
    right.imshow(shown, cmap="Blues", origin="lower", vmin=0, vmax=max(1, counts.max()))
    for a in range(n):
        for b in range(n):
            if counts[a, b]:
                right.text(b, a, str(counts[a, b]), ha="center", va="center", fontsize=8,
                           color="#c0392b" if b > a else "black", weight="bold" if b > a else "normal")
    names = [name for name, _, _ in LAYERS]
    right.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    right.set_yticks(range(n), names, fontsize=8)
    right.set_xlabel("imported layer")
    right.set_ylabel("importing layer")
    right.set_title("imports between layers, counted from the code (red: upward, none allowed)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--png", type=Path, help="draw the layers to this PNG")
    args = parser.parse_args()
    bad = violations() + [" <-> ".join(c) + " (import circle)" for c in circles()] + private_imports() + \
        long_functions()
    for line in bad:
        print(line)
    if args.png:
        draw(args.png)
        print(f"wrote {args.png}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
