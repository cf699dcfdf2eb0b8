"""Each service's command line: --help, settings errors, the setup script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.catalogue import SERVICES, SETUP
from tests.support.stack import Backends


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("service", SERVICES)
def test_help_lists_settings_with_defaults(service: str) -> None:
    result = run(service, "--help")
    assert result.returncode == 0
    assert f"usage: python -m {service}" in result.stdout
    assert "--postgres-dsn" in result.stdout and "(default: **********)" in result.stdout
    assert "--log-level" in result.stdout and "(default: INFO)" in result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_invalid_setting_stops_with_one_line_naming_it(service: str) -> None:
    prefix = SERVICES[service].env_prefix
    result = run(service, env={"PATH": "/usr/bin", f"{prefix}PORT": "not-a-port"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: invalid setting {prefix}PORT:")


def test_invalid_flag_is_a_usage_error() -> None:
    result = run("node_server", "--fanout-mode", "sideways")
    assert result.returncode == 2
    assert "error: invalid setting" in result.stderr and "fanout_mode" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_setup_is_idempotent(backends: Backends) -> None:
    env = {
        "PATH": "/usr/bin",
        **{k.replace("PREFIX_", ""): v for k, v in backends.env(SETUP.env_prefix).items()},
    }
    for _ in range(2):
        result = run(SETUP.module, env=env)
        assert result.returncode == 0, result.stderr


def test_setup_says_what_is_unreachable() -> None:
    env = {
        "PATH": "/usr/bin",
        "WSPOOL_SETUP_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:1/x",
        "WSPOOL_SETUP_TIMEOUT_SECONDS": "3",
    }
    result = run(SETUP.module, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("setup failed: postgres:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_a_misspelt_setting_stops_start_up_naming_it(service: str) -> None:
    misspelt = f"{SERVICES[service].env_prefix}LOG_LEVLE"
    result = run(service, "--help", env={"PATH": "/usr/bin", misspelt: "DEBUG"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: unknown setting {misspelt} (misspelt? python -m {service} --help lists them)"
    )
    spelt = f"{SERVICES[service].env_prefix}LOG_LEVEL"  # the control: spelt right, it starts
    assert run(service, "--help", env={"PATH": "/usr/bin", spelt: "DEBUG"}).returncode == 0


@pytest.mark.parametrize(
    ("service", "setting"),
    [
        ("node_server", "AUTH_TOKENS"),
        ("worker_server", "AUTH_TOKENS"),
        ("node_server", "ADMIN_TOKEN"),
    ],
)
def test_a_token_set_but_empty_stops_start_up(service: str, setting: str) -> None:
    prefix = SERVICES[service].env_prefix
    result = run(service, env={"PATH": "/usr/bin", f"{prefix}{setting}": " "})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: invalid setting {prefix}{setting}: is set but empty; unset it "
        + ("to run without tokens" if setting == "AUTH_TOKENS" else "instead")
    ]
    # The control: a real token passes, so only the (broken) port is reported.
    env = {"PATH": "/usr/bin", f"{prefix}{setting}": "s3cret", f"{prefix}PORT": "x"}
    assert run(service, env=env).stderr.startswith(f"error: invalid setting {prefix}PORT:")
