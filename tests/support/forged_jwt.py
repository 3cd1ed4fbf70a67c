"""JWTs built by hand, so the header says whatever a forger wants (``alg: none``,
``RS256`` over an HMAC, ``HS512``, a ``jku``), which PyJWT's encoder would refuse
or warn about. Standard library only."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any, Optional

#: A JWK Set URL nothing listens on (RFC 7515 §4.1.2): a verifier that fetched it
#: would fail or hang there.
UNREACHABLE_JKU = "http://127.0.0.1:1/jwks"


def hand_signed(
    header: dict[str, Any], claims: dict[str, Any], key: Optional[bytes], digest: str = "sha256"
) -> str:
    """``header.claims.signature``, the signature HMAC-``digest`` under ``key``
    whatever ``header["alg"]`` says, or empty when ``key`` is None."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{part(signature)}"
