"""Write a saved model's code beside its weights, so it loads with `trust_remote_code=True` without mesa_lm.

transformers loads remote code from one flat folder in which modules may only import their siblings
(`from .name import x`). The package is layered (ops, layers, models), so the modules the model needs are copied
flat, `mesa_lm.ops.mesa.chunk` as `ops_mesa_chunk.py`, and their package-relative imports rewritten to match.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os

PACKAGE = "mesa_lm"
MODEL_PACKAGE = "mesa_lm.models.mesa"
ENTRY_MODULES = (f"{MODEL_PACKAGE}.configuration_mesa", f"{MODEL_PACKAGE}.modeling_mesa")
AUTO_MAP = {
    "AutoConfig": "configuration_mesa.MesaConfig",
    "AutoModel": "modeling_mesa.MesaModel",
    "AutoModelForCausalLM": "modeling_mesa.MesaForCausalLM",
}


def flat_name(module: str) -> str:
    """`mesa_lm.models.mesa.modeling_mesa` -> `modeling_mesa`; `mesa_lm.ops.mesa.chunk` -> `ops_mesa_chunk`."""
    if module.startswith(MODEL_PACKAGE + "."):
        return module[len(MODEL_PACKAGE) + 1 :]
    return module[len(PACKAGE) + 1 :].replace(".", "_")


def _relative_imports(module: str) -> tuple[str, list[tuple[ast.ImportFrom, str]]]:
    """The module's source and its package-relative `from ... import` statements with their absolute targets."""
    spec = importlib.util.find_spec(module)
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    package = module if spec.origin.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise ValueError(f"{module}: 'import {PACKAGE}...' cannot be bundled; use a relative 'from ... import'")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            raise ValueError(f"{module}: 'from {node.module} import' cannot be bundled; import it relatively")
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            if node.module is None:
                raise ValueError(f"{module}: 'from . import name' cannot be bundled; import from the module itself")
            found.append((node, importlib.util.resolve_name("." * node.level + node.module, package)))
    return source, found


def _rewrite(source: str, imports: list[tuple[ast.ImportFrom, str]]) -> str:
    lines = source.splitlines()
    for node, target in sorted(imports, key=lambda item: -item[0].lineno):
        indent = lines[node.lineno - 1][: node.col_offset]
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        lines[node.lineno - 1 : node.end_lineno] = [f"{indent}from .{flat_name(target)} import {names}"]
    return "\n".join(lines) + "\n"


def write_remote_code(save_directory: str | os.PathLike) -> list[str]:
    """Copy every module the model needs into `save_directory`, flattened; return the file names written."""
    pending, done, written = list(ENTRY_MODULES), set(), []
    while pending:
        module = pending.pop()
        if module in done:
            continue
        done.add(module)
        source, imports = _relative_imports(module)
        pending.extend(target for _, target in imports)
        name = flat_name(module) + ".py"
        with open(os.path.join(save_directory, name), "w", encoding="utf-8") as f:
            f.write(_rewrite(source, imports))
        written.append(name)
    return sorted(written)
