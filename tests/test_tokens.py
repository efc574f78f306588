"""Personal link tokens: well formed, never the same twice, stored only as their SHA-256."""

import hashlib

from workflow import tokens


def test_tokens_are_well_formed_distinct_and_stored_as_their_digest():
    made = [tokens.new_token() for _ in range(50)]
    assert len({token for token, _ in made}) == 50
    for token, digest in made:
        assert tokens.well_formed(token)
        assert digest == hashlib.sha256(token.encode("ascii")).hexdigest()
    assert not tokens.well_formed("x" * 42) and not tokens.well_formed("x" * 42 + "=")
