"""What a kernel gets outside a hub (``current_token``'s fallbacks) and what a hub profile sets up at
kernel start on this machine (the real ``cuda_available()`` decides which branch runs)."""

from __future__ import annotations

import pytest

from imagelib.auth import current_token, in_hub
from imagelib.backend import cuda_available
from imagelib.errors import Unavailable
from imagelib.hub_profile import start_profile


def test_outside_a_hub_explicit_then_environment_then_none() -> None:
    assert current_token(env={}) is None
    assert current_token(env={"IMAGELIB_TOKEN": "from-env"}) == "from-env"
    assert current_token("explicit", env={"IMAGELIB_TOKEN": "from-env"}) == "explicit"
    half = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "IMAGELIB_TOKEN": "from-env"}
    assert not in_hub(half) and current_token(env=half) == "from-env"  # no server token: not a hub


def test_unreachable_hub_is_a_coded_error() -> None:
    from tests.conftest import free_port

    env = {
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_USER": "alice",
        "IMAGELIB_TOKEN": "not-used-under-a-hub",
    }
    with pytest.raises(Unavailable) as caught:
        current_token(env=env)
    assert caught.value.code == "HUB_UNAVAILABLE" and "/users/alice" in caught.value.message


def test_profiles_say_which_backend_the_kernel_got(capsys: pytest.CaptureFixture[str]) -> None:
    assert "CPU profile, NumPy backend" in start_profile("cpu")
    gpu = start_profile("gpu")
    if cuda_available():
        assert "CuPy backend" in gpu
    else:
        assert "no CUDA device is visible: using the NumPy backend" in gpu
    assert gpu in capsys.readouterr().out  # printed in the kernel at start, not only returned
