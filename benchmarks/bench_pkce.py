"""PKCE pair generation: roomsecrets against the stdlib floor and Authlib.

All three produce a 64-character verifier and its S256 challenge. The floor is
the least any correct implementation can do with the standard library:
``secrets.token_urlsafe`` + ``hashlib.sha256`` + base64. Target: at most 1.5x.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from roomsecrets.core.oauth.pkce import generate_pkce_pair

from .harness import Row, interleaved_best

TARGET = 1.5


def floor_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 48 bytes -> 64 characters
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def run(quick: bool = False) -> list[Row]:
    fns = {"floor": floor_pair, "roomsecrets": generate_pkce_pair}
    try:
        from authlib.common.security import generate_token
        from authlib.oauth2.rfc7636 import create_s256_code_challenge
    except ImportError:  # the peer is optional; the floor ratio is the target
        generate_token = None
    if generate_token is not None:

        def authlib_pair() -> tuple[str, str]:
            verifier = generate_token(64)
            return verifier, create_s256_code_challenge(verifier)

        fns["authlib"] = authlib_pair
    for name, fn in fns.items():
        verifier, challenge = fn()
        assert len(verifier) == 64 and len(challenge) == 43, name
    best = interleaved_best(fns, number=2_000 if quick else 20_000, repeat=5 if quick else 9)
    rows = [
        Row("pkce pair", f"{name} per pair", best[name] * 1e6, "us") for name in fns
    ]
    ratio = best["roomsecrets"] / best["floor"]
    rows.append(Row("pkce pair", "roomsecrets / stdlib floor", ratio, "x", f"<= {TARGET}",
                    ratio <= TARGET))
    if "authlib" in best:
        rows.append(Row("pkce pair", "authlib / stdlib floor", best["authlib"] / best["floor"],
                        "x"))
    return rows
