"""Per-version environments: requirements read as Cog reads them, the server's packages reused (nothing built
when they satisfy the project), a local wheelhouse installed from with no network, clear errors for what cannot
be (a requirement that would replace torch, one pip cannot install, a missing system package)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cocina.config import load_project
from cocina.hub.envs import EnvironmentBuilder, EnvironmentBuildError, environment_spec
from tests.hub.wheels import make_wheel


def _project(root: Path, requirements: str, cog_extra: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "requirements.txt").write_text(requirements)
    build = 'build:\n  python_version: "3.13"\n  python_requirements: requirements.txt\n'
    (root / "cog.yaml").write_text(f'{build}{cog_extra}predict: "predict.py:P"\n')
    (root / "predict.py").write_text("class P: pass\n")
    return root


def test_requirements_are_read_as_cog_reads_them(tmp_path: Path) -> None:
    root = _project(
        tmp_path / "p",
        "# the seed's own\ntorch\ntransformers>=4  # pinned loosely\naccelerate\ncog\ncocina==0.1\nreplicate\n\n",
        "  python_packages:\n    - tinydep==1.0\n",
    )
    spec = environment_spec(load_project(root))
    assert [(r.text, r.origin) for r in spec.requirements] == [
        ("torch", "requirements.txt:2"),
        ("transformers>=4", "requirements.txt:3"),
        ("accelerate", "requirements.txt:4"),
        ("replicate", "requirements.txt:7"),
        ("tinydep==1.0", "cog.yaml build.python_packages"),
    ]  # `cog` and `cocina` dropped, as Cog drops its own line
    assert spec.python_version == "3.13"


def test_what_the_server_has_builds_nothing(tmp_path: Path) -> None:
    spec = environment_spec(load_project(_project(tmp_path / "p", "torch\ntransformers\naccelerate\nreplicate\n")))
    lines: list[str] = []
    t0 = time.monotonic()
    env = EnvironmentBuilder(tmp_path / "envs").ensure(spec, lines.append)
    assert time.monotonic() - t0 < 5
    assert env.python == sys.executable and env.installed == () and not (tmp_path / "envs").exists()
    assert "nothing to install" in lines[-1]
    assert any("this server runs Python" in note for note in env.notes)  # 3.13 asked for: said, not refused


def test_a_local_wheelhouse_offline_and_reused(tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 42\n")
    spec = environment_spec(load_project(_project(tmp_path / "p", "accelerate\ntinydep==1.0\n")))
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(tmp_path / "wheels")], no_index=True)
    lines: list[str] = []
    env = builder.ensure(spec, lines.append)
    assert env.installed == ("tinydep-1.0",) and env.path is not None and not env.reused
    assert any(line.startswith("Installing collected packages") for line in lines)
    probe = "import tinydep, torch, cocina, accelerate; print(tinydep.VALUE, torch.__file__, cocina.__file__)"
    out = subprocess.run([env.python, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "42"
    import torch

    import cocina

    assert out[1] == torch.__file__ and out[2] == cocina.__file__  # the server's own, never installed again
    again = builder.ensure(spec)
    assert again.reused and again.python == env.python
    # An interrupted build (no marker file) is redone rather than used.
    (env.path / "cocina-environment.json").unlink()
    assert not builder.ensure(spec).reused


def test_another_server_install_builds_its_own_environment(tmp_path: Path) -> None:
    """An environment layers on the install that built it (its `.pth` names that install's packages): another
    install sharing the data directory (here a second venv seeing the same packages) must not reuse it, or a
    removed first install leaves it unable to import cocina."""
    import site
    import sysconfig

    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 42\n")
    root = _project(tmp_path / "p", "tinydep==1.0\n")
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(tmp_path / "wheels")], no_index=True)
    first = builder.ensure(environment_spec(load_project(root)))
    assert first.path is not None and not first.reused
    other = tmp_path / "other-install"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    other_site = subprocess.run(
        [str(other / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sorted({sysconfig.get_paths()["purelib"], *site.getsitepackages()})
    (Path(other_site) / "ours.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    probe = (
        "import sys; from pathlib import Path; from cocina.config import load_project; "
        "from cocina.hub.envs import EnvironmentBuilder, environment_spec; "
        f"b = EnvironmentBuilder(Path({str(tmp_path / 'envs')!r}), find_links=[{str(tmp_path / 'wheels')!r}], "
        "no_index=True); "
        f"env = b.ensure(environment_spec(load_project(Path({str(root)!r})))); print(env.reused, env.path)"
    )
    out = subprocess.run([str(other / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True)
    reused, path = out.stdout.split()
    assert reused == "False" and Path(path) != first.path
    assert builder.ensure(environment_spec(load_project(root))).reused  # the first install still has its own


def test_concurrent_builds_of_one_environment_build_it_once(tmp_path: Path) -> None:
    """Two servers (or `cocina predict`s) asking for the same environment at once: one builds it, the other waits
    and reuses it, and both run (before, the second deleted the first's half-built files and pip failed)."""
    from concurrent.futures import ThreadPoolExecutor

    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 42\n")
    spec = environment_spec(load_project(_project(tmp_path / "p", "tinydep==1.0\n")))
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(tmp_path / "wheels")], no_index=True)
    lines: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        envs = list(pool.map(lambda _: builder.ensure(spec, lines.append), range(2)))
    assert sorted(e.reused for e in envs) == [False, True] and envs[0].path == envs[1].path
    assert any(line.startswith("waiting for another build") for line in lines)
    out = subprocess.run([envs[0].python, "-c", "import tinydep; print(tinydep.VALUE)"], capture_output=True, text=True)
    assert out.stdout.strip() == "42"


def test_replacing_the_servers_torch_is_refused_naming_the_line(tmp_path: Path) -> None:
    spec = environment_spec(load_project(_project(tmp_path / "p", "numpy\ntorch==2.0.0\n")))
    with pytest.raises(EnvironmentBuildError) as err:
        EnvironmentBuilder(tmp_path / "envs").ensure(spec)
    assert "requirements.txt:2" in str(err.value) and "torch==2.0.0" in str(err.value)
    assert "would replace the server's torch" in str(err.value)


def test_an_uninstallable_requirement_names_it_with_pips_message(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    spec = environment_spec(load_project(_project(tmp_path / "p", "no-such-package-cocina==1.0\n")))
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(tmp_path / "wheels")], no_index=True)
    with pytest.raises(EnvironmentBuildError) as err:
        builder.ensure(spec)
    message = str(err.value)
    assert "no-such-package-cocina==1.0 (requirements.txt:1)" in message
    assert "No matching distribution found for no-such-package-cocina==1.0" in message  # pip's own words
    assert not [p for p in (tmp_path / "envs").iterdir() if p.is_dir()]  # nothing half-built is left to reuse


def test_a_missing_system_package_says_how_to_install_it(tmp_path: Path) -> None:
    spec = environment_spec(
        load_project(_project(tmp_path / "p", "", "  system_packages:\n    - no-such-deb-package-cocina\n"))
    )
    with pytest.raises(EnvironmentBuildError) as err:
        EnvironmentBuilder(tmp_path / "envs").ensure(spec)
    assert "sudo apt-get install -y no-such-deb-package-cocina" in str(err.value)


def test_an_invalid_requirement_line(tmp_path: Path) -> None:
    spec = environment_spec(load_project(_project(tmp_path / "p", "numpy\nthis is not a requirement\n")))
    with pytest.raises(EnvironmentBuildError) as err:
        EnvironmentBuilder(tmp_path / "envs").ensure(spec)
    assert "requirements.txt:2: invalid requirement" in str(err.value)
