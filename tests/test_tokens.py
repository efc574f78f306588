"""Personal link tokens made a batch at a time."""

import hashlib

from workflow import tokens


def test_tokens_made_together_are_well_formed_distinct_and_stored_as_their_digest():
    made = tokens.new_tokens(50)
    assert len({token for token, _ in made}) == 50
    for token, digest in made:
        assert tokens.well_formed(token)
        assert digest == hashlib.sha256(token.encode("ascii")).hexdigest()
    assert tokens.new_tokens(0) == []
