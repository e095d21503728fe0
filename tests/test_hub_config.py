"""A hub started without a required setting, or with an issuer it cannot reach, stops at once with one
line naming the variable (exit status 2), not a traceback and not a failure at the first login."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from hub.local import CONFIG
from imagelib.idp import running
from tests.conftest import free_port


def start_hub(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``jupyterhub -f hub/jupyterhub_config.py`` as ``make hub`` runs it; returns once it exits."""
    hub = str(Path(sys.executable).parent / "jupyterhub")
    return subprocess.run(
        [hub, "-f", str(CONFIG)], env=env, cwd=cwd, capture_output=True, text=True, timeout=90
    )


def settings(issuer: str, state: Path) -> dict[str, str]:
    """A complete hub environment."""
    return {
        **os.environ,
        "IMAGELIB_OIDC_ISSUER": issuer,
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "IMAGELIB_HUB_CLIENT_SECRET": "x",
        "IMAGELIB_HUB_STATE": str(state),
    }


@pytest.mark.parametrize("missing", ["JUPYTERHUB_CRYPT_KEY", "IMAGELIB_OIDC_ISSUER"])
def test_missing_setting_stops_the_hub_with_its_name(missing: str, tmp_path: Path) -> None:
    with running() as idp:
        env = settings(idp.issuer, tmp_path)
        del env[missing]
        done = start_hub(env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"configuration error: {missing} is not set" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "jupyterhub.sqlite").exists()  # stopped before touching anything


@pytest.mark.parametrize(
    ("variable", "value"), [("IMAGELIB_HUB_CULL_TIMEOUT", "1h"), ("IMAGELIB_HUB_PORT", "٨٠")]
)
def test_a_malformed_number_stops_the_hub_with_its_name(variable: str, value: str, tmp_path: Path) -> None:
    with running() as idp:
        env = {**settings(idp.issuer, tmp_path), variable: value}
        done = start_hub(env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"configuration error: {variable} = {value!r} is not a whole number" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "jupyterhub.sqlite").exists()


def test_unreachable_issuer_is_a_configuration_error(tmp_path: Path) -> None:
    done = start_hub(settings(f"http://127.0.0.1:{free_port()}/realms/imagelib", tmp_path), tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "IMAGELIB_OIDC_ISSUER" in done.stderr and "discovery document" in done.stderr
    assert "Traceback" not in done.stderr
