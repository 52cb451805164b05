"""Per-version Python environments, as Cog's image build makes them, without Docker.

A project's `build.python_requirements` file and `build.python_packages` (the lines `cog` and `cocina` dropped,
as Cog drops them) are its requirements. When the server's own environment already satisfies them all, the
version runs on the server's interpreter: nothing is built or installed. Otherwise an environment is built once
per requirements hash under `envs/<hash>/` and reused by every version with the same requirements: a virtualenv
that sees the server's packages (a `.pth` file) so that torch and cocina are never downloaded again, into which
pip installs only what is missing. A requirement that would replace the server's torch or cocina is an error
naming it; so is one pip cannot install (its message included). `--find-links` and `--no-index` make the build
work offline from a local wheelhouse. `build.system_packages` are checked (dpkg) and a missing one is an error
with the command that installs it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cocina.config import ProjectConfig

log = logging.getLogger("cocina.hub.envs")

DROPPED = frozenset({"cog", "cocina"})  # the SDK is cocina's own; Cog drops its own line too
PROTECTED = ("torch", "cocina")  # never replaced: one torch per machine, and the server's own cocina


class EnvironmentBuildError(Exception):
    """An environment that cannot be made: the message names the file, the requirement or the package."""


@dataclass(frozen=True)
class RequirementLine:
    """One requirement and where it came from (`requirements.txt:3`, `cog.yaml build.python_packages`)."""

    text: str
    origin: str


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a version needs of its environment."""

    requirements: tuple[RequirementLine, ...] = ()
    python_version: str | None = None
    system_packages: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        """The environment's identity: its requirements (sorted) and the interpreter it runs on."""
        body = {"requirements": sorted(r.text for r in self.requirements), "python": _python_id()}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Environment:
    """Where a version runs: `python` (the server's own when nothing had to be installed) and what was
    installed for it."""

    python: str
    path: Path | None = None
    installed: tuple[str, ...] = ()
    reused: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


Progress = Callable[[str], None]


def _python_id() -> str:
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}-{sysconfig.get_platform()}"


def environment_spec(project: ProjectConfig) -> EnvironmentSpec:
    """The requirements of a project, read from its `build:` section (ValueError names a bad line)."""
    lines: list[RequirementLine] = []
    build = project.build
    if build.python_requirements:
        path = project.root / build.python_requirements
        for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
            text = raw.split(" #", 1)[0].strip()
            if not text or text.startswith("#"):
                continue
            lines.append(RequirementLine(text, f"{build.python_requirements}:{number}"))
    lines += [RequirementLine(p.strip(), "cog.yaml build.python_packages") for p in build.python_packages if p.strip()]
    kept = []
    for line in lines:
        name = _name(line)
        if name is not None and name in DROPPED:
            continue
        kept.append(line)
    return EnvironmentSpec(tuple(kept), build.python_version, tuple(build.system_packages))


def _name(line: RequirementLine) -> str | None:
    """The project name of a plain requirement line; None for options, URLs, paths and includes."""
    if line.text.startswith("-") or "://" in line.text or line.text.startswith((".", "/")):
        return None
    try:
        return canonicalize_name(Requirement(line.text).name)
    except InvalidRequirement:
        return None


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _satisfied(req: Requirement, seen: set[str] | None = None) -> bool:
    """Whether the server's environment satisfies `req` (with its extras' requirements)."""
    env = default_environment()
    if req.marker is not None and not req.marker.evaluate(env):  # type: ignore[arg-type]
        return True  # not for this platform: nothing to install
    version = _installed_version(req.name)
    if version is None or (req.specifier and not req.specifier.contains(version, prereleases=True)):
        return False
    seen = seen if seen is not None else set()
    for extra in req.extras:
        key = f"{canonicalize_name(req.name)}[{extra}]"
        if key in seen:
            continue
        seen.add(key)
        for dep in importlib.metadata.requires(req.name) or []:
            dep_req = Requirement(dep)
            wanted = dep_req.marker is not None and dep_req.marker.evaluate({**env, "extra": extra})  # type: ignore[dict-item]
            if wanted and not _satisfied(Requirement(f"{dep_req.name}{dep_req.specifier}"), seen):
                return False
    return True


def unsatisfied(spec: EnvironmentSpec) -> list[RequirementLine]:
    """The requirement lines the server's environment does not satisfy (lines that cannot be checked — URLs,
    paths, options — count as not satisfied). Raises `EnvironmentBuildError` for an invalid line or one that would
    replace the server's torch or cocina."""
    missing = []
    for line in spec.requirements:
        if line.text.startswith("-") or "://" in line.text or line.text.startswith((".", "/")):
            missing.append(line)
            continue
        try:
            req = Requirement(line.text)
        except InvalidRequirement as exc:
            raise EnvironmentBuildError(f"{line.origin}: invalid requirement {line.text!r}: {exc}") from None
        name = canonicalize_name(req.name)
        if name in PROTECTED:
            have = _installed_version(name)
            if have is None or (req.specifier and not req.specifier.contains(have, prereleases=True)):
                raise EnvironmentBuildError(
                    f"{line.origin}: {line.text!r} would replace the server's {name} {have or '(not installed)'}; "
                    f"cocina runs every version on the server's {name}: remove the line or relax it"
                )
            continue
        if not _satisfied(req):
            missing.append(line)
    return missing


def check_system_packages(packages: Iterable[str]) -> None:
    """Each Debian package must be installed (dpkg); else an error with the command that installs them."""
    missing = []
    dpkg = shutil.which("dpkg-query")
    for package in packages:
        if dpkg is not None:
            out = subprocess.run([dpkg, "-W", "-f=${Status}", package], capture_output=True, text=True)
            if out.returncode == 0 and "install ok installed" in out.stdout:
                continue
        elif shutil.which(package):
            continue
        missing.append(package)
    if missing:
        raise EnvironmentBuildError(
            f"build.system_packages: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed "
            f"on this machine; install with: sudo apt-get install -y {' '.join(missing)}"
        )


def _site_packages() -> list[str]:
    """The server's package directories (what a version's environment sees beneath its own)."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths.update(p for p in sys.path if p.endswith("site-packages"))
    return sorted(p for p in paths if os.path.isdir(p))


def _server_key() -> str:
    """Which server install an environment layers on (its interpreter and package directories): an environment
    built over one install is not reused by another (its `.pth` names the first one's packages, which may be gone
    or differ), so two installs sharing a data directory each get their own."""
    return hashlib.sha256(json.dumps([sys.executable, _site_packages()]).encode()).hexdigest()[:8]


class EnvironmentBuilder:
    """Builds (or reuses) environments under `root`. `find_links` and `no_index` are passed to pip."""

    def __init__(self, root: Path, *, find_links: Iterable[str] = (), no_index: bool = False) -> None:
        self.root = root
        self.find_links = tuple(find_links)
        self.no_index = no_index

    def ensure(self, spec: EnvironmentSpec, progress: Progress | None = None) -> Environment:
        say = progress or (lambda _line: None)
        notes = []
        have = f"{sys.version_info.major}.{sys.version_info.minor}"
        if spec.python_version and ".".join(spec.python_version.split(".")[:2]) != have:
            # One interpreter per server (uv could fetch others, but not offline): said, not refused.
            note = f"build.python_version is {spec.python_version}; this server runs Python {have}, used instead"
            notes.append(note)
            say(note)
        check_system_packages(spec.system_packages)
        missing = unsatisfied(spec)
        if not missing:
            if spec.requirements:
                say("requirements already satisfied by the server's environment: nothing to install")
            return Environment(sys.executable, notes=tuple(notes))
        path = self.root / f"{spec.hash}-{_server_key()}"
        marker = path / "cocina-environment.json"
        self.root.mkdir(parents=True, exist_ok=True)
        # One build of an environment at a time, across processes (servers, `cocina predict`s sharing the data
        # directory): a second one waits and then reuses it instead of deleting the first's half-built files.
        with open(self.root / f"{path.name}.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(f"waiting for another build of environment {spec.hash[:12]}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.is_file():
                done = json.loads(marker.read_text())
                say(f"reusing environment {spec.hash[:12]}")
                installed = tuple(done.get("installed", ()))
                return Environment(str(path / "bin" / "python"), path, installed, True, tuple(notes))
            return self._build(spec, missing, path, say, tuple(notes))

    def _build(
        self, spec: EnvironmentSpec, missing: list[RequirementLine], path: Path, say: Progress, notes: tuple[str, ...]
    ) -> Environment:
        # Built in place; the marker file written last is what makes it usable (an interrupted build is redone).
        partial = path
        shutil.rmtree(partial, ignore_errors=True)
        say(
            f"building environment {spec.hash[:12]} for {len(missing)} requirement(s): "
            + ", ".join(m.text for m in missing)
        )
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(partial)], check=True, capture_output=True)
        site = Path(
            subprocess.run(
                [str(partial / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        # The server's packages, after the environment's own: torch and cocina come from there, never again.
        # `site.addsitedir` (not a bare path) so that the server's own .pth files are read too: an editable
        # install of cocina is one.
        (site / "cocina-server-packages.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in _site_packages())
        )
        constraints = partial / "constraints.txt"
        pins = [f"{name}=={v}" for name in PROTECTED if (v := _installed_version(name)) is not None]
        constraints.write_text("".join(f"{p}\n" for p in pins))
        requirements = partial / "requirements.txt"
        requirements.write_text("".join(f"{m.text}\n" for m in missing))
        cmd = [
            str(partial / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "-r",
            str(requirements),
            "-c",
            str(constraints),
            *(a for link in self.find_links for a in ("--find-links", link)),
            *(["--no-index"] if self.no_index else []),
        ]
        env = {**os.environ, "PIP_REQUIRE_VIRTUALENV": "0", "PYTHONNOUSERSITE": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        output: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            output.append(line)
            if line.startswith(("Collecting", "Processing", "Downloading", "Installing", "Successfully")):
                say(line)
        if proc.wait() != 0:
            shutil.rmtree(partial, ignore_errors=True)
            tail = "\n".join(x for x in output if x.strip() and "is ignored: it is neither" not in x)[-2000:]
            names = ", ".join(f"{m.text} ({m.origin})" for m in missing)
            raise EnvironmentBuildError(f"pip could not install {names}:\n{tail}")
        installed: tuple[str, ...] = ()
        for line in reversed(output):
            if line.startswith("Successfully installed "):
                installed = tuple(line.removeprefix("Successfully installed ").split())
                break
        (partial / "cocina-environment.json").write_text(
            json.dumps({"requirements": [m.text for m in spec.requirements], "installed": list(installed)}, indent=1)
        )
        say(f"environment {spec.hash[:12]} ready: installed {', '.join(installed) or 'nothing'}")
        return Environment(str(path / "bin" / "python"), path, installed, False, notes)
