"""The service's log lines: fields as key=value or JSON keys, nothing a client sends can
forge a line."""

from __future__ import annotations

import io
import json
import logging

from banditops.service.logs import JsonFormatter, TextFormatter, access, log_access


def _logged(formatter: logging.Formatter, *args) -> str:
    handler = logging.StreamHandler(stream := io.StringIO())
    handler.setFormatter(formatter)
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        log_access(*args)
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)
    return stream.getvalue()


def test_a_client_newline_or_escape_cannot_forge_a_line():
    args = ("GET", "/v1/deployments/{name}", "/v1/deployments/x", 404, 0.0012,
            {"name": "x\nWARNING banditops.service: version v1 rolled back\x1b[2J" + "y" * 500})
    text = _logged(TextFormatter("%(name)s: %(message)s"), *args)
    assert text.count("\n") == 1 and "\x1b" not in text
    assert text.startswith("banditops.access: request method=GET route=/v1/deployments/{name} "
                           'status=404 ms=1.2 deployment="x\\nWARNING')
    assert len(text) < 300  # the name is cut to 100 characters
    line = json.loads(_logged(JsonFormatter(), *args))
    assert line["deployment"].startswith("x\nWARNING") and len(line["deployment"]) == 100
    assert (line["level"], line["logger"], line["status"]) == ("info", "banditops.access", 404)


def test_a_prediction_names_its_version_and_decision():
    answer = {"decision_id": "ab" * 16, "version": "v2", "prediction": 1}
    line = json.loads(_logged(JsonFormatter(), "POST", "/v1/deployments/{name}/predict",
                              "/v1/deployments/main/predict", 200, 0.003, {"name": "main"},
                              answer))
    assert {k: line[k] for k in ("route", "deployment", "version", "decision_id", "ms")} == {
        "route": "/v1/deployments/{name}/predict", "deployment": "main", "version": "v2",
        "decision_id": "ab" * 16, "ms": 3.0}
    batch = json.loads(_logged(JsonFormatter(), "POST", "/v1/deployments/{name}/predict",
                               "/v1/deployments/main/predict", 200, 0.003, {"name": "main"},
                               {"decisions": [answer, answer]}))
    assert batch["decisions"] == 2 and "decision_id" not in batch


def test_lines_go_to_the_current_stderr_not_a_closed_one(monkeypatch):
    """A caller that swaps sys.stderr (a test runner's capture) never leaves the log writing
    to a closed stream: each line goes to sys.stderr as it is when the line is written."""
    import io
    import logging
    import sys

    from banditops.service import logs

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info", "text")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("banditops.service").info("still written")
        assert "still written" in second.getvalue()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
