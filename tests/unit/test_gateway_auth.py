"""Bearer header parsing, token verification and the role check."""

from __future__ import annotations

import pytest

from streamcart.errors import ForbiddenError
from streamcart.gateway.auth import Authenticator, bearer_token, require_role
from streamcart.workers.users import tokens
from streamcart.workers.users.tokens import InvalidTokenError


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "Basic abc"}, {"authorization": "Bearer"},
     {"authorization": "Bearer a b"}],
)  # fmt: skip
def test_a_missing_or_odd_header_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidTokenError):
        bearer_token(headers)


def test_the_scheme_is_case_insensitive() -> None:
    assert bearer_token({"authorization": "bearer abc.def.ghi"}) == "abc.def.ghi"


async def test_claims_of_a_valid_token_and_refusal_of_a_forged_one() -> None:
    key = tokens.SigningKey(b"the-secret-" * 4)
    authenticator = Authenticator(tokens.SigningKeys(key))
    token, _ = tokens.issue(key, "u1", "admin")
    claims = await authenticator.claims({"authorization": f"Bearer {token}"})
    assert (claims.sub, claims.role) == ("u1", "admin")
    assert require_role(claims, "admin") is claims

    forged, _ = tokens.issue(tokens.SigningKey(b"another-secret-" * 4), "u1", "admin")
    with pytest.raises(InvalidTokenError):
        await authenticator.claims({"authorization": f"Bearer {forged}"})


def test_a_missing_role_is_forbidden() -> None:
    claims = tokens.Claims(sub="u1", role="user", iat=0, nbf=0, exp=1)
    with pytest.raises(ForbiddenError, match="admin"):
        require_role(claims, "admin")
