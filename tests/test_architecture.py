"""The rules between the parts of roomsecrets/, read from every module's imports (ast).

The tree is the architecture (README "What is here"): ``core/oauth`` is the sans-I/O
protocol, ``core/pending`` the request machine, the ``core`` root the room layer,
``adapters/*`` one folder per library. These rules keep the folders honest:

- ``core/oauth`` never imports the room layer or ``core/pending``;
- ``core/pending`` never imports the service layer;
- ``core`` imports only the standard library, and itself only relatively;
- a store adapter never imports the server, the remote client or the other store;
- no module imports another module's private name.

Each rule is also run once against a copy of the package with a violation planted,
so a rule that could never fire would fail here too.
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "roomsecrets"

ROOM_LAYER = {"service", "client", "refresh", "participants", "grants"}
SERVICE_LAYER = {"service", "client", "refresh", "participants"}
STORES = {"file", "aws"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def module_name(root: pathlib.Path, path: pathlib.Path) -> tuple[str, bool]:
    """``roomsecrets.core.oauth.pkce`` for ``root/core/oauth/pkce.py``; and whether it is a package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imports(root: pathlib.Path):
    """Every import in the package: (module, line, imported module, imported name or None, relative)."""
    for path in sorted(root.rglob("*.py")):
        name, is_package = module_name(root, path)
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, node.lineno, alias.name, None, False
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    yield name, node.lineno, target, alias.name, bool(node.level)


def targets(target: str, imported: str | None) -> list[str]:
    """The modules an import may reach: ``from .core import grants`` reaches ``core.grants``."""
    found = [target]
    if imported is not None:
        found.append(f"{target}.{imported}")
    return found


def part(module: str, top: str) -> list[str]:
    """The path of ``module`` below the package root, e.g. ``['core', 'oauth', 'pkce']``."""
    parts = module.split(".")
    return parts[1:] if parts[0] == top else []


def violations(root: pathlib.Path) -> list[str]:
    top = root.name
    found = []
    for module, line, target, imported, relative in imports(root):
        where = f"{module}:{line}"
        src = part(module, top)
        dst_all = [part(t, top) for t in targets(target, imported)]
        # A private name of another module (``from .x import _y``); dunders are not private.
        private = imported is not None and imported.startswith("_") and not imported.startswith("__")
        if private and (target.split(".")[0] == top or relative):
            found.append(f"{where}: imports the private name {imported} from {target}")
        if src[:1] == ["core"]:
            outside = target.split(".")[0]
            if not relative and outside == top:
                found.append(f"{where}: core imports {target} absolutely (relative imports only)")
            elif not relative and outside not in STDLIB:
                found.append(f"{where}: core imports {target}, which is not the standard library")
            for dst in dst_all:
                if dst[:1] == ["adapters"] or (dst and dst[0] != "core" and relative):
                    found.append(f"{where}: core imports {'.'.join(dst)} from outside core/")
                    break
        for dst in dst_all:
            inner = dst[1] if dst[:1] == ["core"] and len(dst) > 1 else None
            if src[:2] == ["core", "oauth"] and inner in (*ROOM_LAYER, "pending"):
                found.append(f"{where}: core/oauth imports the room layer ({'.'.join(dst)})")
            if src[:2] == ["core", "pending"] and inner in SERVICE_LAYER:
                found.append(f"{where}: core/pending imports the service layer ({'.'.join(dst)})")
            store = src[1] if src[:1] == ["adapters"] and len(src) > 1 and src[1] in STORES else None
            other = dst[1] if dst[:1] == ["adapters"] and len(dst) > 1 else None
            if store and other and (other in {"server", "remote"} or (other in STORES and other != store)):
                found.append(f"{where}: the {store} store imports adapters.{other}")
    return sorted(set(found))


def test_the_parts_keep_their_rules() -> None:
    assert violations(PACKAGE) == []


PLANTED = [
    ("core/oauth/pkce.py", "from ..grants import SecretsGrant", "core/oauth imports the room layer"),
    ("core/oauth/pkce.py", "from ..pending import machine", "core/oauth imports the room layer"),
    ("core/pending/machine.py", "from ..service import SecretsService", "core/pending imports the service layer"),
    ("core/grants.py", "import aiohttp", "not the standard library"),
    ("core/grants.py", "from roomsecrets.core import errors", "absolutely"),
    ("core/grants.py", "from ..adapters import remote", "from outside core/"),
    ("adapters/file/store.py", "from ..server import app", "the file store imports adapters.server"),
    ("adapters/file/store.py", "from .. import remote", "the file store imports adapters.remote"),
    ("adapters/aws/store.py", "from ..file import FileSecretStore", "the aws store imports adapters.file"),
    ("adapters/remote.py", "from .server.app import _ROOMS", "private name _ROOMS"),
]


@pytest.mark.parametrize(("path", "line", "message"), PLANTED, ids=[p[2] for p in PLANTED])
def test_each_rule_fires_on_a_planted_violation(tmp_path, path, line, message) -> None:
    copy = tmp_path / "roomsecrets"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / path
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    found = violations(copy)
    assert any(message in v for v in found), found
