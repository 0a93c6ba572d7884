"""The README's config reference is the one generated from the pydantic models: a field
added, renamed or re-described without regenerating it fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from banditops.service import config_reference
from banditops.service.config import ServiceConfig
from banditops.service.config_reference import COMMAND, SECTIONS, current_block, render
from tests.service.conftest import REPO


def test_the_readme_reference_is_generated_from_the_models():
    block = current_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its config-reference markers"
    assert block == render(), (
        f"README.md's config reference differs from the config models; regenerate it: "
        f"{COMMAND} README.md")


def test_every_field_of_every_section_is_in_the_reference():
    text = render()
    for _, model in SECTIONS:
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in text and field.description in text.replace("\\|", "|")
    assert "| `max_batch` | integer | `256` | Instances (or feedbacks) per request" in text
    assert '| `scope` | "client" or "admin" | required |' in text
    assert "| `guardrail` | table or false | `{}` (on, defaults below) |" in text


def test_a_field_without_a_description_stops_the_generator(monkeypatch):
    field = ServiceConfig.model_fields["max_batch"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(ValueError, match=r"ServiceConfig.max_batch has no Field\(description"):
        render()


def test_the_command_writes_and_checks_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{config_reference.BEGIN}\nstale\n{config_reference.END}\n\nend\n")
    run = [sys.executable, "-m", "banditops.service.config_reference", str(readme)]
    env = {"PYTHONPATH": str(REPO / "src")}
    stale = subprocess.run([*run, "--check"], capture_output=True, text=True, env=env)
    assert stale.returncode == 1 and f"out of date; run {COMMAND}" in stale.stderr
    assert subprocess.run(run, capture_output=True, env=env).returncode == 0
    assert readme.read_text() == f"# x\n\n{render()}\n\nend\n"
    assert subprocess.run([*run, "--check"], capture_output=True, env=env).returncode == 0
