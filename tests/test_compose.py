"""docker-compose.yml, the Dockerfiles and .dockerignore, checked without a Docker engine.

``docker-compose config`` validates the file the way Compose itself reads it; the rest parses
the files and checks them against the installed project: every command they run must be a
real ``logsig`` subcommand (parsed by ``logsig.cli.build_parser``) or a known binary, and the
images must be built from pyproject.toml and all of its packages.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from logsig.cli import build_parser
from logsig.settings import ENV_NAMES
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = {name: ROOT / f"Dockerfile.{name}" for name in ("gateway", "worker", "agent")}
SERVICES = {"redis", "gateway", "worker", "agent"}
# The agent serves nothing a probe could ask (`logsig health` has no agent target); it exits
# on failure and `restart` brings it back. Nothing waits for it to be healthy.
NO_HEALTHCHECK = {"agent"}
# Compose-only secrets: required (``${X:?...}``), not logsig settings.
SECRETS = {"REDIS_PASSWORD", "REDISCLI_AUTH"}
TEST_PASSWORD = "compose-test-secret"
# Start-up order through depends_on/service_healthy: redis, then gateway and worker, then agent.
LEVEL = {"redis": 0, "gateway": 1, "worker": 1, "agent": 2}
ALLOWED_BINARIES = {"logsig", "redis-server", "redis-cli", "python", "python3"}
# Settings that follow from the compose topology and must not come from a user's .env.
TOPOLOGY = {
    "gateway": {"REDIS_URL": f"redis://:{TEST_PASSWORD}@redis:6379/0",
                "GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "24224"},
    "worker": {"REDIS_URL": f"redis://:{TEST_PASSWORD}@redis:6379/0"},
    "agent": {"GATEWAY_HOST": "gateway", "GATEWAY_PORT": "24224"},
}
SUBSTITUTION = re.compile(r"\$\{([^}]*)\}")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP_PACKAGES = sorted({p.split(".")[0] for p in PYPROJECT["tool"]["setuptools"]["packages"]})


# --- helpers ---------------------------------------------------------------------------------

def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as fh:
        return yaml.safe_load(fh)


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def with_defaults(value: str) -> str:
    """What Compose substitutes when no variable is set: ``${X:-d}`` -> ``d``."""
    return SUBSTITUTION.sub(lambda m: m.group(1).partition(":-")[2], value)


def argv(command: str | list[str]) -> list[str]:
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return [with_defaults(a) for a in args]


def assert_runnable(args: list[str], where: str) -> None:
    """``args`` starts with an allowed binary; a ``logsig`` command line parses as given."""
    assert args, f"{where}: empty command"
    binary = PurePosixPath(args[0]).name
    assert binary in ALLOWED_BINARIES, f"{where}: runs {binary!r}, not a project command"
    if binary == "logsig":
        try:
            build_parser().parse_args(args[1:])
        except SystemExit as exc:
            pytest.fail(f"{where}: `{shlex.join(args)}` is not a valid logsig command ({exc})")


def compose_cli() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (CI must install it)")
        pytest.skip("docker-compose not installed")
    return found


def clean_env() -> dict[str, str]:
    """This environment without logsig's variables, so Compose falls back to its defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    return {**env, "REDIS_PASSWORD": TEST_PASSWORD}


def compose_config(*extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [compose_cli(), "-f", str(COMPOSE_FILE), *extra, "config"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return yaml.safe_load(proc.stdout)


def instructions(path: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""
    assert not logical, f"{path.name}: dangling line continuation"


def exec_form(rest: str, where: str) -> list[str]:
    assert rest.startswith("["), f"{where}: use the exec form (JSON list) so signals reach it"
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), where
    return value


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped per build stage (the ARGs before the first FROM come first)."""
    groups: list[list[tuple[str, str]]] = [[]]
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            groups.append([])
        groups[-1].append((keyword, rest))
    return groups


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


# --- docker-compose config -------------------------------------------------------------------

def test_compose_config_accepts_the_file() -> None:
    resolved = compose_config()
    assert set(resolved["services"]) == SERVICES
    for name, expected in TOPOLOGY.items():
        env = resolved["services"][name]["environment"]
        assert {k: env[k] for k in expected} == expected, name


def test_a_dotenv_from_the_example_does_not_change_the_topology() -> None:
    # docker-compose reads .env for substitution; .env.example says REDIS_URL=127.0.0.1...
    resolved = compose_config("--env-file", str(ROOT / ".env.example"))
    for name, expected in TOPOLOGY.items():
        env = resolved["services"][name]["environment"]
        assert {k: env[k] for k in expected} == expected, name


# --- compose file, statically ----------------------------------------------------------------

def test_services_and_no_required_env_file() -> None:
    compose = load_compose()
    assert set(compose["services"]) == SERVICES
    for name, svc in compose["services"].items():
        assert "env_file" not in svc, f"{name}: a fresh clone has no .env"
        assert svc.get("restart") == "unless-stopped", name


def test_every_substitution_has_a_default_and_names_a_setting() -> None:
    text = "\n".join(
        line for line in COMPOSE_FILE.read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    found = SUBSTITUTION.findall(text)
    assert found
    for expr in found:
        name, sep, _ = expr.partition(":-")
        if name.partition(":?")[0] in SECRETS:
            assert ":?" in expr, f"${{{expr}}}: a secret must be required, never defaulted"
            continue
        assert sep, f"${{{expr}}} has no default; Compose would substitute an empty string"
        assert name in ENV_NAMES.values(), f"${{{expr}}}: {name} is not a logsig setting"


def test_environment_keys_are_settings() -> None:
    for name, svc in services().items():
        for key in svc.get("environment", {}):
            assert key in ENV_NAMES.values() or key in SECRETS, f"{name}: {key} is unknown"


def test_healthchecks() -> None:
    for name, svc in services().items():
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in svc
            continue
        test = svc["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: use [CMD, ...]"
        assert_runnable(argv(test[1:]), f"{name} healthcheck")
    assert services()["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services()["gateway"]["healthcheck"]["test"][1:] == ["logsig", "health", "gateway"]
    assert services()["worker"]["healthcheck"]["test"][1:] == ["logsig", "health", "worker"]


def test_depends_on_waits_for_healthy_services_in_order() -> None:
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dep}"
            assert "healthcheck" in svcs[dep], f"{name} waits on {dep}, which has no healthcheck"
        levels = [LEVEL[d] for d in deps]
        assert LEVEL[name] == (max(levels) + 1 if levels else 0), name
    assert set(svcs["gateway"]["depends_on"]) == {"redis"}
    assert set(svcs["worker"]["depends_on"]) == {"redis"}
    assert set(svcs["agent"]["depends_on"]) == {"gateway"}


def test_worker_can_be_scaled() -> None:
    worker = services()["worker"]
    # A fixed name, host port or hostname would clash (or share one Celery node name).
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"worker has {key}; --scale worker=4 would break"


def test_redis_uses_aof_on_a_named_volume_and_is_not_published() -> None:
    compose = load_compose()
    svc = compose["services"]["redis"]
    assert svc["image"] == "redis:7-alpine"
    shell, flag, script = argv(svc["command"])
    assert (shell, flag) == ("sh", "-c")
    # The password reaches redis-server through a config file, not its command line.
    started = shlex.split(script.rsplit("exec ", 1)[1])
    assert started[:2] == ["docker-entrypoint.sh", "redis-server"]
    assert_runnable(started[1:], "redis command")
    assert started[started.index("--appendonly") + 1] == "yes"
    assert "requirepass" in script and "--requirepass" not in script
    assert "ports" not in svc
    volume, _, target = svc["volumes"][0].partition(":")
    assert (volume in compose["volumes"], target) == (True, "/data")


def test_gateway_listens_on_all_interfaces_and_publishes_forward_and_analysis() -> None:
    gateway = services()["gateway"]
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"
    assert [with_defaults(p) for p in gateway["ports"]] == ["24224:24224", "24226:24226"]


def test_agent_registry_is_on_a_named_volume() -> None:
    compose = load_compose()
    agent = compose["services"]["agent"]
    registry = PurePosixPath(agent["environment"]["REGISTRY_PATH"])
    mounts = dict(reversed(v.split(":")[:2]) for v in agent["volumes"])
    assert str(registry.parent) in mounts, "the registry directory is not a mount"
    assert mounts[str(registry.parent)] in compose["volumes"], "registry not on a named volume"


def test_compose_commands_are_real_commands() -> None:
    for name, svc in services().items():
        assert "command" in svc, f"{name}: say what runs"
        if name == "redis":
            continue  # a shell wrapper, checked in test_redis_uses_aof_...
        assert_runnable(argv(svc["command"]), f"{name} command")
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
            assert build["dockerfile"] == f"Dockerfile.{name}", name


def test_logsig_console_script_is_installed() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("logsig") == "logsig.cli:main"
    assert PYPROJECT["project"]["scripts"]["logsig"] == "logsig.cli:main"


# --- Dockerfiles -----------------------------------------------------------------------------

@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, DOCKERFILES[request.param]


def test_images_are_python_311_slim(dockerfile: tuple[str, Path]) -> None:
    _, path = dockerfile
    args = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
        if keyword == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
            assert image == "python:3.11-slim", f"{path.name}: FROM {rest}"


def test_images_run_as_a_non_root_user(dockerfile: tuple[str, Path]) -> None:
    _, path = dockerfile
    users = [rest for keyword, rest in stages(path)[-1] if keyword == "USER"]
    assert users, f"{path.name}: the runtime stage runs as root"
    assert users[-1].split(":")[0] not in ("root", "0"), path.name


def test_images_install_from_pyproject_without_dev_extras(dockerfile: tuple[str, Path]) -> None:
    name, path = dockerfile
    installs = [rest for keyword, rest in instructions(path)
                if keyword == "RUN" and "pip install" in rest]
    assert installs, f"{path.name}: installs nothing"
    allowed_extras = {"fast"} if name in ("gateway", "worker") else set()
    for rest in installs:
        for command in re.split(r"&&|;", rest):
            if "pip install" not in command:
                continue
            assert "--no-cache-dir" in command, f"{path.name}: {command.strip()}"
            words = shlex.split(command)
            targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            assert targets, f"{path.name}: {command.strip()}"
            for target in targets:
                project, _, extras = target.partition("[")
                assert project == ".", f"{path.name}: installs {target}, not the project"
                assert set(filter(None, extras.rstrip("]").split(","))) <= allowed_extras


def test_images_copy_pyproject_and_every_package(dockerfile: tuple[str, Path]) -> None:
    _, path = dockerfile
    copied: set[str] = set()
    for keyword, rest in instructions(path):
        if keyword == "COPY" and "--from=" not in rest:
            copied.update(s.strip("./") for s in shlex.split(rest)[:-1])
    assert TOP_PACKAGES == ["agents", "gateway", "logsig", "workers"]
    missing = {"pyproject.toml", *TOP_PACKAGES} - copied
    assert not missing, f"{path.name} does not copy {sorted(missing)}"


def test_image_commands_are_real_commands(dockerfile: tuple[str, Path]) -> None:
    name, path = dockerfile
    found = {}
    for keyword, rest in instructions(path):
        assert keyword != "ENTRYPOINT", f"{path.name}: compose commands start with the binary"
        if keyword == "CMD":
            found["CMD"] = exec_form(rest, f"{path.name} CMD")
        if keyword == "HEALTHCHECK":
            _options, _, command = rest.partition("CMD ")
            assert command, f"{path.name}: HEALTHCHECK without CMD"
            found["HEALTHCHECK"] = exec_form(command, f"{path.name} HEALTHCHECK")
    assert "CMD" in found, f"{path.name} has no CMD"
    assert found["CMD"][:2] == ["logsig", name]
    for keyword, args in found.items():
        assert_runnable(args, f"{path.name} {keyword}")
    if name in NO_HEALTHCHECK:
        assert "HEALTHCHECK" not in found
    else:
        assert found["HEALTHCHECK"] == ["logsig", "health", name]


def test_compose_command_matches_image_default() -> None:
    for name, path in DOCKERFILES.items():
        cmd = [exec_form(rest, path.name) for k, rest in instructions(path) if k == "CMD"][-1]
        assert argv(services()[name]["command"]) == cmd, name


def test_gateway_image_exposes_the_published_port() -> None:
    exposed = [rest for k, rest in instructions(DOCKERFILES["gateway"]) if k == "EXPOSE"]
    assert exposed == ["24224 24226"]


# --- .dockerignore ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "path", ["pyproject.toml", "logsig/cli.py", "agents/__init__.py", "gateway/__init__.py",
             "workers/__init__.py", "workers/rules/__init__.py", "workers/rules/default.yml"],
)
def test_dockerignore_keeps_what_the_images_need(path: str) -> None:
    assert not dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path", [".env", ".git/HEAD", ".venv/bin/python", "tests/conftest.py",
             "logsig/__pycache__/cli.cpython-311.pyc", "logsig.egg-info/PKG-INFO",
             "benchmarks/results/run.json", "docker-compose.yml"],
)
def test_dockerignore_drops_the_rest(path: str) -> None:
    assert dockerignore_excludes(path)


def test_redis_needs_a_password_from_the_environment() -> None:
    env = {k: v for k, v in clean_env().items() if k != "REDIS_PASSWORD"}
    proc = subprocess.run([compose_cli(), "-f", str(COMPOSE_FILE), "config"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "REDIS_PASSWORD" in proc.stderr
    config = compose_config()
    urls = {svc["environment"].get("REDIS_URL") for svc in config["services"].values()}
    assert urls - {None} == {f"redis://:{TEST_PASSWORD}@redis:6379/0"}


def test_every_container_has_a_read_only_root_filesystem() -> None:
    for name, svc in services().items():
        assert svc.get("read_only") is True, name
        assert svc.get("tmpfs") == ["/tmp"], name
