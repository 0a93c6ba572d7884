"""The Python client's own checks (its calls are tested against real servers in tests/service)."""

import pytest

from banditops.client import Client


@pytest.mark.parametrize("item", [{"decision_id": "d1", "label": 1}, "d1", ("d1", 1, 2)])
def test_feedback_many_refuses_anything_but_pairs_before_sending(item):
    with Client("http://127.0.0.1:9", "k" * 20) as client, \
            pytest.raises(TypeError, match=r"\(decision_id, label\) pairs"):
        client.feedback_many("main", [("d0", 0), item])
