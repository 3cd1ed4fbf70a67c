"""roomsecrets/core/ can be copied alone into any project, under any name."""

import ast
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

CORE = pathlib.Path(__file__).resolve().parents[2] / "roomsecrets" / "core"
REPO = CORE.parents[1]

VENDORED_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {folder!r})
    import acme_oauth_vendored as core
    from acme_oauth_vendored.oauth.pkce import generate_pkce_pair, s256_challenge
    from acme_oauth_vendored.oauth.authorization import build_authorization_url

    verifier, challenge = generate_pkce_pair()
    assert s256_challenge(verifier) == challenge
    url = build_authorization_url(
        authorization_endpoint="https://as.example/authorize",
        client_id="c", redirect_uri="https://app.example/cb", state="s",
        scopes=["a"], code_challenge=challenge,
    )
    assert "code_challenge=" + challenge in url
    third_party = sorted(
        name for name, module in sys.modules.items()
        if module is not None and "site-packages" in (getattr(module, "__file__", "") or "")
    )
    assert not third_party, third_party
    assert "roomsecrets" not in sys.modules
    print("OK", url.split("?")[0])
    """
)


def test_core_copied_under_another_name_works_with_only_the_stdlib(tmp_path):
    shutil.copytree(CORE, tmp_path / "acme_oauth_vendored",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # -I: ignore PYTHON* variables and the user site; -S: no site-packages at all.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", VENDORED_SCRIPT.format(folder=str(tmp_path))],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK https://as.example/authorize")


def test_import_roomsecrets_needs_no_third_party_package():
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import roomsecrets; "
        "bad = [n for n, m in sys.modules.items() if 'site-packages' in (getattr(m, '__file__', '') or '')]; "
        "assert not bad, bad; print('OK')"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_core_imports_only_stdlib_and_itself_relatively():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                problems += [f"{path.name}: {a.name}" for a in node.names
                             if a.name.split(".")[0] not in stdlib]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] not in stdlib
            ):
                problems.append(f"{path.name}: from {node.module}")
    assert problems == []
