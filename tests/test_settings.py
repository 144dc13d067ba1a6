"""Settings: ``.env.example`` documents exactly ENV_NAMES; ``.env`` < environment; bad values."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from logsig.errors import SettingsError
from logsig.settings import ENV_NAMES, Settings
from tests.conftest import ROOT, logsig_cmd

ENV_EXAMPLE = ROOT / ".env.example"
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
NUMERIC = sorted(name for name, f in FIELDS.items() if str(f.type) in ("int", "float"))


def example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def assigned_names() -> list[str]:
    """Variable names assigned (not commented out) in .env.example, in file order."""
    return [
        line.split("=", 1)[0].strip()
        for line in example_lines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def write_env(path: Path, **values: str) -> str:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return str(path)


def test_every_field_has_an_env_name() -> None:
    assert set(ENV_NAMES) == set(FIELDS)
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES), "two fields share a variable"


def test_env_example_documents_exactly_env_names() -> None:
    names = assigned_names()
    assert len(names) == len(set(names)), "a variable is assigned twice in .env.example"
    assert set(names) - set(ENV_NAMES.values()) == set(), "not a setting (typo?)"
    assert set(ENV_NAMES.values()) - set(names) == set(), "setting missing from .env.example"


def test_env_example_parses_to_the_same_variables() -> None:
    # What python-dotenv (which Settings uses) sees, not only what our line split sees.
    assert set(dotenv_values(ENV_EXAMPLE)) == set(ENV_NAMES.values())


def test_env_example_comments_every_variable() -> None:
    lines = example_lines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name = line.split("=", 1)[0]
        comment: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].startswith("# ") and not lines[j].startswith("# ---"):
            comment.insert(0, lines[j])
            j -= 1
        assert comment, f"{name} has no comment above it"
        assert "Read by:" in " ".join(comment), f"{name}: comment does not say who reads it"


def test_env_example_values_are_the_code_defaults() -> None:
    """Copying .env.example to .env changes nothing: its values are the real defaults."""
    assert Settings.from_env(environ={}, dotenv_path=str(ENV_EXAMPLE)) == Settings()


def test_from_env_reads_a_dotenv_file(tmp_path: Path) -> None:
    path = write_env(tmp_path / ".env", REDIS_URL="redis://cache:6380/3", GATEWAY_PORT="25000",
                     TIMEOUT="0.5", FLUENT_TAG="app.web", WORKER_CONCURRENCY="3")
    settings = Settings.from_env(environ={}, dotenv_path=path)
    assert settings.redis_url == "redis://cache:6380/3"
    assert settings.gateway_port == 25000 and isinstance(settings.gateway_port, int)
    assert settings.timeout == 0.5 and isinstance(settings.timeout, float)
    assert settings.tag == "app.web"
    assert settings.worker_concurrency == 3
    assert settings.batch_size == Settings().batch_size  # untouched fields keep defaults


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    path = write_env(tmp_path / ".env", BATCH_SIZE="10", KEY_PREFIX="from-file")
    settings = Settings.from_env(environ={"BATCH_SIZE": "20"}, dotenv_path=path)
    assert (settings.batch_size, settings.key_prefix) == (20, "from-file")


def test_process_environment_overrides_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_env(tmp_path / ".env", LOG_LEVEL="DEBUG", QUEUE="file-queue")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.delenv("QUEUE", raising=False)
    settings = Settings.from_env(dotenv_path=path)
    assert (settings.log_level, settings.queue) == ("WARNING", "file-queue")


def test_empty_value_means_default(tmp_path: Path) -> None:
    path = write_env(tmp_path / ".env", BATCH_SIZE="", AGENT_NAME="")
    assert Settings.from_env(environ={}, dotenv_path=path) == Settings()


def test_missing_dotenv_file_is_fine(tmp_path: Path) -> None:
    settings = Settings.from_env(environ={}, dotenv_path=str(tmp_path / "absent.env"))
    assert settings == Settings()


@pytest.mark.parametrize("field", NUMERIC)
def test_non_numeric_value_names_the_variable(field: str) -> None:
    var = ENV_NAMES[field]
    with pytest.raises(SettingsError, match=rf"^{var}='soon' is not a valid"):
        Settings.from_env(environ={var: "soon"}, dotenv_path=None)


@pytest.mark.parametrize(
    ("var", "value"),
    [("BATCH_SIZE", "0"), ("MAX_FRAME_BYTES", "-1"), ("WORKER_CONCURRENCY", "0"),
     ("TIMEOUT", "0"), ("ACK_TIMEOUT", "-2.5"), ("POLL_INTERVAL", "0"),
     ("HEALTH_PORT", "-1"), ("GATEWAY_PORT", "65536"), ("READ_TIMEOUT", "0"),
     ("ROTATE_WAIT", "-1"), ("EVENT_LOOP", "trio")],
)
def test_out_of_range_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{var} must be"):
        Settings.from_env(environ={var: value}, dotenv_path=None)


def test_bad_value_in_dotenv_file_names_the_variable(tmp_path: Path) -> None:
    path = write_env(tmp_path / ".env", GATEWAY_PORT="http")
    with pytest.raises(SettingsError, match="GATEWAY_PORT"):
        Settings.from_env(environ={}, dotenv_path=path)


def test_cli_reports_bad_setting_with_exit_code_2(tmp_path: Path) -> None:
    env = {**os.environ, "BATCH_SIZE": "lots"}
    proc = subprocess.run(
        logsig_cmd("--env-file", str(tmp_path / "absent.env"), "health", "gateway"),
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "BATCH_SIZE" in proc.stderr
