"""`build(target, source, out)`: one target into a staging directory, moved into place only when complete.

Everything that can be checked is checked before anything is written (the source resolves, its model is on this
machine, `--out` is free, the tools a target needs are here); what can only fail while building (a requirement
with no wheel) fails in the staging directory, which is removed: `--out` is either the whole build or absent.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cocina.deploy.cloud import CloudOptions, write_cloud
from cocina.deploy.edge import EdgeOptions, check_requirements, download_wheels, lock_lines, readme, run_script
from cocina.deploy.onprem import OnpremOptions, write_onprem
from cocina.deploy.source import BuildError, BuildSource, copy_project


class Target(enum.StrEnum):
    EDGE = "edge"
    ONPREM = "onprem"
    CLOUD = "cloud"


@dataclass(frozen=True)
class BuildResult:
    out: Path
    files: int
    size_bytes: int


def cocina_source_tree() -> Path | None:
    """The checkout cocina runs from (an editable install or a source tree), where its wheel can be built."""
    import cocina

    root = Path(cocina.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def build_cocina_wheel(dest: Path) -> Path:
    """cocina's own wheel (the version running now) into `dest`."""
    root = cocina_source_tree()
    if root is None:
        raise BuildError(
            "cocina's source tree is not here (cocina was installed from a wheel): install it from a checkout "
            "(`pip install -e .`) to build bundles"
        )
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dest),
            str(root),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"building cocina's wheel failed:\n{(done.stderr or done.stdout).strip()[-1500:]}")
    wheels = sorted(dest.glob("cocina-*.whl"))
    if not wheels:
        raise BuildError("building cocina's wheel produced no wheel")
    return wheels[-1]


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"{out} exists and is not empty: choose another --out, or remove it")
    existing = out.resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise BuildError(f"{existing}: not a writable directory (for --out {out})")


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def build(
    target: Target,
    source: BuildSource,
    out: Path,
    *,
    cloud: CloudOptions | None = None,
    onprem: OnpremOptions | None = None,
    edge: EdgeOptions | None = None,
) -> BuildResult:
    """Build `target` for `source` into `out` (which must not exist, or be empty)."""
    out = out.resolve()
    check_out(out)
    edge = edge or EdgeOptions()
    if target is Target.EDGE:
        check_requirements(source)
    if target is Target.EDGE and edge.gguf:
        from cocina.deploy.gguf_export import check_exportable

        check_exportable(source, edge.gguf)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        copy_project(source, stage / "app", skip=(out, stage))
        if source.model_dir is not None:
            shutil.copytree(source.model_dir, stage / "app" / "model", dirs_exist_ok=True)
        wheel = build_cocina_wheel(stage / "wheels")
        if target is Target.CLOUD:
            write_cloud(source, stage, wheel.name, cloud or CloudOptions())
        elif target is Target.ONPREM:
            write_onprem(source, stage, wheel.name, onprem or OnpremOptions())
        else:
            download_wheels(source, wheel, stage / "wheels", stage, edge.pip_cache_dir)
            (stage / "constraints.txt").unlink()
            lock = lock_lines(stage / "wheels")
            (stage / "requirements.lock").write_text("\n".join(lock) + "\n")
            launcher = stage / "run.sh"
            launcher.write_text(run_script(source, edge))
            launcher.chmod(0o755)
            if edge.gguf:
                from cocina.deploy.gguf_export import export_gguf

                export_gguf(source, stage / "gguf", edge.gguf)
            (stage / "README.md").write_text(readme(source, edge, lock))
        stage.chmod(0o755)  # mkdtemp made it private; the build is for others to read (secrets inside are 0600)
        if out.exists():
            out.rmdir()  # empty (checked): replaced by the finished build
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    files, size = _size(out)
    return BuildResult(out, files, size)
