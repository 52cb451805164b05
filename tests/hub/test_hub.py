"""The hub without HTTP: pushing versions (checked before they exist), deleting them, deployments and releases."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocina.hub import Hub
from cocina.hub.deployments import Split
from cocina.hub.manifest import build_manifest
from cocina.serving.errors import Conflict, InvalidRequest, ModelNotFound, Unprocessable
from tests.hub.conftest import ECHO, push, write_project
from tests.hub.wheels import make_wheel


async def test_pushing_the_same_content_twice_is_one_version(hub: Hub, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    first, created = await push(hub, root)
    assert created and len(first) == 64
    again, created_again = await push(hub, root)
    assert again == first and not created_again
    version = hub.get_version("acme/echo", first)
    props = version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    assert set(props) == {"text", "shout"}  # derived without running setup
    assert version.manifest is not None and {f["path"] for f in version.manifest} == {"predict.py", "cog.yaml"}
    assert (hub.versions_dir / first / "predict.py").read_text() == (root / "predict.py").read_text()
    assert hub.get_model("acme/echo").name == "acme/echo"  # created by the first push
    (root / "README.md").write_text("# echo\n")
    second, _ = await push(hub, root)
    assert second != first
    assert [v.id for v in hub.list_versions("acme/echo")] == [second, first]  # newest first


@pytest.mark.parametrize(
    ("predict", "config", "words"),
    [
        ("def broken(:\n", 'predict: "predict.py:Predictor"\n', ["predict.py:1", "invalid syntax"]),
        ("class Other: pass\n", 'predict: "predict.py:Predictor"\n', ["Predictor"]),
        (ECHO, 'predict: "predict.py:Predictor"\nbuidl:\n  gpu: true\n', ["cog.yaml", "buidl", "build"]),
        (
            ECHO,
            'build:\n  python_packages:\n    - no-such-package-cocina==9\npredict: "predict.py:Predictor"\n',
            ["no-such-package-cocina==9", "No matching distribution"],
        ),
    ],
    ids=["syntax error", "no predictor class", "bad cog.yaml key", "uninstallable requirement"],
)
async def test_a_bad_project_makes_no_version(
    hub: Hub, tmp_path: Path, predict: str, config: str, words: list[str]
) -> None:
    root = write_project(tmp_path / "bad", predict, config)
    with pytest.raises(Unprocessable) as err:
        await push(hub, root)
    for word in words:
        assert word in err.value.message, err.value.message
    manifest, _ = build_manifest(root)
    assert hub.store.list_versions(None) == [] and not (hub.versions_dir / manifest.version_id).exists()


async def test_a_requirement_from_a_local_wheelhouse(hub: Hub, tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 'from the wheelhouse'\n")
    predict = ECHO.replace("from cog import", "import tinydep\nfrom cog import")
    config = 'build:\n  python_packages:\n    - tinydep==1.0\npredict: "predict.py:Predictor"\n'
    vid, _ = await push(hub, write_project(tmp_path / "p", predict, config))
    env = hub.get_version("acme/echo", vid).environment
    assert env is not None and env["installed"] == ["tinydep-1.0"] and env["python"].startswith(str(hub.root))
    spec = hub.spec(hub.get_version("acme/echo", vid))
    assert spec.python == env["python"] and spec.pushed and spec.version == vid


async def test_an_upload_that_never_finished_makes_no_version(hub: Hub, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    manifest, _ = build_manifest(root)  # the blobs were never stored
    with pytest.raises(Conflict) as err:
        await hub.create_version("acme/echo", manifest)
    assert "were not uploaded" in err.value.message and hub.store.list_versions(None) == []


async def test_deployments_releases_and_rollback(hub: Hub, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    a, _ = await push(hub, root)
    (root / "v2.txt").write_text("two\n")
    b, _ = await push(hub, root)
    dep = hub.create_deployment("acme/prod", "acme/echo", [Split(a, 100)], by="ana")
    assert dep.current_release is not None and dep.current_release.number == 1
    with pytest.raises(Conflict):
        hub.create_deployment("acme/prod", "acme/echo", [Split(a, 100)])
    with pytest.raises(InvalidRequest) as bad:
        hub.update_deployment("acme/prod", splits=[Split(a, 90), Split(b, 20)])
    assert "sum to 110" in bad.value.message
    with pytest.raises(InvalidRequest):
        hub.update_deployment("acme/prod", splits=[Split("f" * 64, 100)])
    hub.update_deployment("acme/prod", splits=[Split(a, 90), Split(b, 10)], min_instances=1)
    assert hub.warm() == {("acme/echo", a), ("acme/echo", b)}
    hub.update_deployment("acme/prod", splits=[Split(b, 100)])
    back = hub.rollback("acme/prod")  # routes as release 2 did: 90/10
    assert back.current_release is not None and back.current_release.number == 4
    assert back.current_release.configuration["versions"] == [
        {"version": a, "weight": 90},
        {"version": b, "weight": 10},
    ]
    assert [r.number for r in hub.releases("acme/prod")] == [4, 3, 2, 1]
    first = hub.rollback("acme/prod", 1)
    assert first.current_release is not None and first.current_release.configuration["versions"] == [
        {"version": a, "weight": 100}
    ]
    with pytest.raises(ModelNotFound):
        hub.rollback("acme/prod", 99)
    route = hub.route("acme/prod", "user-1")
    assert route is not None and route.version == a and route.release == 5


async def test_deleting_a_version_in_use_is_refused(hub: Hub, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    a, _ = await push(hub, root)
    (root / "v2.txt").write_text("two\n")
    b, _ = await push(hub, root)
    hub.create_deployment("acme/prod", "acme/echo", [Split(a, 100)])
    with pytest.raises(Conflict) as err:
        await hub.delete_version("acme/echo", a)
    assert "deployment acme/prod" in err.value.message
    with pytest.raises(Conflict):
        hub.delete_model("acme/echo")  # it still has versions
    await hub.delete_version("acme/echo", b)
    assert [v.id for v in hub.list_versions("acme/echo")] == [a] and not (hub.versions_dir / b).exists()
    with pytest.raises(ModelNotFound):
        hub.get_version("acme/echo", b)
    hub.delete_deployment("acme/prod")
    await hub.delete_version("acme/echo", a)
    hub.delete_model("acme/echo")
    with pytest.raises(ModelNotFound):
        hub.get_model("acme/echo")
