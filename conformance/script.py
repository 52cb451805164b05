"""A testscript engine: the script language of rogpeppe/go-internal's `testscript`, which Cog's suite is written in.

Each line is split into words with `$VAR` expansion; single quotes keep spaces and stop expansion (`''` is a
literal quote); an unquoted `#` ends the line. A line may start with conditions (`[short]`, `[!linux]`) and with
`!`, which negates the command: it must fail, or a pattern must not match. Patterns are Go regular expressions in
multi-line mode; the ones Cog's suite uses mean the same in Python's `re` (tests/conformance checks that every
pattern in the suite compiles).

Commands are functions `(script, neg, args)`. The built-in ones are here; the harness's (`cog`, `curl`, ...) are
added by `conformance.harness`. A command fails the test by raising `ScriptFailure` (`script.fatal(...)`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Command",
    "Script",
    "ScriptFailure",
    "ScriptSkip",
    "expand",
    "go_expand",
    "parse_line",
]

Command = Callable[["Script", bool, list[str]], None]

_BACKGROUND = re.compile(r"^&(\w+&)?$")
_LOG_LIMIT = 16_000  # characters of one command's output kept in the transcript
_GRACE_S = 5.0  # between SIGINT and SIGKILL when a process must stop


class ScriptFailure(Exception):
    """A command failed: the test fails with this message."""


class ScriptSkip(Exception):
    """The script ran `skip`: the test is skipped with this message."""


class _ScriptStop(Exception):
    """The script ran `stop`: the test ends early and passes."""


# --- expansion and parsing ------------------------------------------------------------------------------------

_SHELL_SPECIAL = set("*#$@!?-0123456789")


def _is_alnum(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalnum())


def _shell_name(s: str) -> tuple[str, int]:
    """Go's `os.getShellName`: the variable name at the start of `s` (after a `$`) and how many bytes it uses."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SHELL_SPECIAL and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                if i == 1:
                    return "", 2  # bad syntax: eat "${}"
                return s[1:i], i + 1
        return "", 1  # bad syntax: eat "${"
    if s[0] in _SHELL_SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and _is_alnum(s[i]):
        i += 1
    return s[:i], i


def go_expand(s: str, mapping: Callable[[str], str]) -> str:
    """Go's `os.Expand`: replace `$var` and `${var}` by `mapping(var)`; a `$` not followed by a name stays."""
    out: list[str] = []
    i = 0
    j = 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            name, width = _shell_name(s[j + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                out.append("$")
            else:
                out.append(mapping(name))
            j += width
            i = j + 1
        j += 1
    out.append(s[i:])
    return "".join(out)


def expand(s: str, getenv: Callable[[str], str]) -> str:
    """testscript's expansion: `os.Expand`, where `${VAR@R}` gives the value quoted for a regular expression."""

    def mapping(key: str) -> str:
        if key.endswith("@R"):
            return re.escape(getenv(key[:-2]))
        return getenv(key)

    return go_expand(s, mapping)


def parse_line(line: str, getenv: Callable[[str], str]) -> list[str]:
    """Split a script line into words as testscript does (see the module docstring)."""
    args: list[str] = []
    arg = ""  # the current word so far
    start = -1  # where the current chunk of the word starts, -1 when no word is open
    quoted = False
    i = 0
    while True:
        if not quoted and (i >= len(line) or line[i] in " \t\r#"):
            if start >= 0:  # a separator ends the open word
                arg += expand(line[start:i], getenv)
                args.append(arg)
                start, arg = -1, ""
            if i >= len(line) or line[i] == "#":
                break
            i += 1
            continue
        if i >= len(line):
            raise ScriptFailure("unterminated quoted argument")
        if line[i] == "'":
            if not quoted:  # a quoted chunk starts
                if start >= 0:
                    arg += expand(line[start:i], getenv)
                start, quoted = i + 1, True
            elif i + 1 < len(line) and line[i + 1] == "'":  # 'it''s' is it's
                arg += line[start:i]
                start = i + 1
                i += 1
            else:  # the quoted chunk ends; the word goes on until a separator
                arg += line[start:i]
                start, quoted = i + 1, False
            i += 1
            continue
        if start < 0:
            start = i
        i += 1
    return args


# --- the script -------------------------------------------------------------------------------------------------


@dataclass
class _Background:
    name: str
    proc: subprocess.Popen[bytes]
    neg: bool
    stdout: Path
    stderr: Path


@dataclass
class CapturedOutput:
    """What a harness command writes as its stdout and stderr (testscript's `ts.Stdout()` / `ts.Stderr()`)."""

    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)


class Script:
    """One test script being run: its working directory, environment, the last command's output, its log."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        env: dict[str, str],
        commands: dict[str, Command],
        *,
        condition: Callable[[str], bool | None] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.cd = workdir
        self.env = dict(env)
        self.commands = {**BUILTINS, **commands}
        self._condition = condition
        self.deadline = deadline if deadline is not None else time.monotonic() + 600.0
        self.stdout = ""
        self.stderr = ""
        self.stdin: str | None = None
        self.log: list[str] = []
        self.values: dict[str, Any] = {}  # per-test state of the harness commands (servers, images)
        self._cleanups: list[Callable[[], None]] = []
        self._background: list[_Background] = []
        self._captured: CapturedOutput | None = None
        self._line = ""

    # --- helpers for commands ---

    def getenv(self, key: str) -> str:
        return self.env.get(key, "")

    def setenv(self, key: str, value: str) -> None:
        self.env[key] = value

    def mkabs(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.cd / p

    def fatal(self, message: str) -> ScriptFailure:
        """The exception a failing command raises: `raise script.fatal(...)`."""
        return ScriptFailure(message)

    def logf(self, text: str) -> None:
        self.log.append(text.rstrip("\n"))

    def defer(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` when the test ends, last registered first."""
        self._cleanups.append(cleanup)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def output(self) -> CapturedOutput:
        """Writers for a harness command's stdout and stderr; once asked for, they become the command's output."""
        if self._captured is None:
            self._captured = CapturedOutput()
        return self._captured

    def set_output(self, stdout: str, stderr: str) -> None:
        self.stdout, self.stderr = stdout, stderr
        self._log_output()

    def _log_output(self) -> None:
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                shown = text if len(text) <= _LOG_LIMIT else text[:_LOG_LIMIT] + f"\n... ({len(text)} characters)"
                self.log.append(f"[{label}]\n{shown.rstrip(chr(10))}")

    def process_env(self) -> dict[str, str]:
        return {**self.env, "PWD": str(self.cd)}

    def look_path(self, program: str) -> str:
        """The executable `program` names, searched in the script's PATH when it has no slash."""
        if "/" in program:
            return program
        found = shutil.which(program, path=self.getenv("PATH"))
        if found is None:
            raise FileNotFoundError(f'exec: "{program}": executable file not found in $PATH')
        return found

    def exec(self, argv: list[str], *, stdin: str | None = None, cwd: Path | None = None) -> tuple[str, str, int]:
        """Run a program to its end (bounded by the test's deadline); returns (stdout, stderr, exit status).

        The program gets its own process group, so everything it started is stopped with it on a timeout.
        Raises FileNotFoundError when the program does not exist and TimeoutError when the test runs out of time.
        """
        data = stdin if stdin is not None else (self.stdin or "")
        self.stdin = None
        proc = subprocess.Popen(
            [self.look_path(argv[0]), *argv[1:]],
            cwd=cwd or self.cd,
            env=self.process_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(data.encode(), timeout=self.remaining())
        except subprocess.TimeoutExpired:
            stop_process_group(proc)
            out, err = proc.communicate()
            raise TimeoutError(f"test timed out while running {argv[0]}") from None
        finally:
            if proc.poll() is None:
                stop_process_group(proc)
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), proc.returncode

    # --- running ---

    def run(self, text: str) -> None:
        """Run the script; raises ScriptFailure or ScriptSkip. Cleanups run in every case."""
        try:
            self.execute(text)
            self._wait_background(check=True)
        finally:
            self.close()

    def execute(self, text: str) -> None:
        """Run the lines of `text`, keeping the script's state (servers, background processes) for more."""
        for line in text.split("\n"):
            if line.startswith("#"):
                self.log.append(line)
                continue
            try:
                self._run_line(line)
            except _ScriptStop:
                break

    def close(self) -> None:
        """Stop what the script left running and run its cleanups (last registered first)."""
        self._stop_background()
        while self._cleanups:
            cleanup = self._cleanups.pop()
            with contextlib.suppress(Exception):
                cleanup()

    def _run_line(self, line: str) -> None:
        self._line = line
        args = parse_line(line, self.getenv)
        if not args:
            return
        self.log.append(f"> {line}")
        while args[0].startswith("[") and args[0].endswith("]"):
            cond = args[0][1:-1].strip()
            args = args[1:]
            if not args:
                raise self.fatal("missing command after condition")
            want = True
            if cond.startswith("!"):
                want = False
                cond = cond[1:].strip()
            if self.condition(cond) != want:
                return
        neg = False
        if args[0] == "!":
            neg = True
            args = args[1:]
            if not args:
                raise self.fatal("! on line by itself")
        command = self.commands.get(args[0])
        if command is None:
            raise self.fatal(f"unknown command {args[0]!r}")
        self._captured = None
        try:
            command(self, neg, args[1:])
        finally:
            if self._captured is not None:
                captured, self._captured = self._captured, None
                self.set_output(captured.stdout.getvalue(), captured.stderr.getvalue())

    def condition(self, cond: str) -> bool:
        if self._condition is not None:
            value = self._condition(cond)
            if value is not None:
                return value
        raise self.fatal(f"unknown condition {cond!r}")

    # --- background processes (`exec ... &`) ---

    def start_background(self, name: str, argv: list[str], neg: bool) -> None:
        if any(bg.name == name and name for bg in self._background):
            raise self.fatal(f"duplicate background process name {name!r}")
        index = len(self._background)
        out_path = self.workdir.parent / f"{self.workdir.name}-bg{index}.out"
        err_path = self.workdir.parent / f"{self.workdir.name}-bg{index}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [self.look_path(argv[0]), *argv[1:]],
                cwd=self.cd,
                env=self.process_env(),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write((self.stdin or "").encode())
            proc.stdin.close()
        self.stdin = None
        self._background.append(_Background(name, proc, neg, out_path, err_path))

    def _find_background(self, name: str) -> list[_Background]:
        if not name:
            return list(self._background)
        found = [bg for bg in self._background if bg.name == name]
        if not found:
            raise self.fatal(f"unknown background process {name!r}")
        return found

    def wait_background(self, name: str) -> None:
        self._wait_background(check=True, name=name)

    def _wait_background(self, *, check: bool, name: str = "") -> None:
        stdouts: list[str] = []
        stderrs: list[str] = []
        failures: list[str] = []
        for bg in self._find_background(name):
            try:
                bg.proc.wait(timeout=self.remaining())
            except subprocess.TimeoutExpired:
                stop_process_group(bg.proc)
                failures.append(f"background {bg.name or bg.proc.args!r}: test timed out")
            stdouts.append(bg.stdout.read_text(errors="replace"))
            stderrs.append(bg.stderr.read_text(errors="replace"))
            ok = bg.proc.returncode == 0
            if ok and bg.neg:
                failures.append(f"background {bg.name or bg.proc.args!r}: unexpected command success")
            elif not ok and not bg.neg:
                failures.append(f"background {bg.name or bg.proc.args!r}: exit status {bg.proc.returncode}")
            self._background.remove(bg)
        if stdouts or stderrs:
            self.set_output("".join(stdouts), "".join(stderrs))
        if check and failures:
            raise self.fatal("; ".join(failures))

    def kill_background(self, name: str, sig: signal.Signals) -> None:
        for bg in self._find_background(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(bg.proc.pid, sig)

    def _stop_background(self) -> None:
        for bg in list(self._background):
            stop_process_group(bg.proc)
        self._background.clear()


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = _GRACE_S) -> None:
    """Interrupt `proc`'s process group, then kill it if it has not ended within `grace_s`."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # what the leader left behind


# --- built-in commands ----------------------------------------------------------------------------------------


def match(script: Script, neg: bool, args: list[str], text: str, name: str) -> None:
    """testscript's `scriptMatch`: `stdout`, `stderr` and `grep` with `-count=N`."""
    count = 0
    if args and args[0].startswith("-count="):
        if neg:
            raise script.fatal("cannot use -count= with negated match")
        try:
            count = int(args[0][len("-count=") :])
        except ValueError as exc:
            raise script.fatal(f"bad -count=: {exc}") from None
        if count < 1:
            raise script.fatal("bad -count=: must be at least 1")
        args = args[1:]
    want = 2 if name == "grep" else 1
    if len(args) != want:
        extra = " file" if name == "grep" else ""
        raise script.fatal(f"usage: {name} [-count=N] 'pattern'{extra}")
    pattern = args[0]
    try:
        regex = compile_pattern(pattern)
    except re.error as exc:
        raise script.fatal(f"bad pattern {pattern!r}: {exc}") from None
    if name == "grep":
        name = args[1]
        try:
            text = script.mkabs(args[1]).read_text(errors="replace")
        except OSError as exc:
            raise script.fatal(str(exc)) from None
    found = regex.search(text)
    if neg:
        if found:
            raise script.fatal(f"unexpected match for {pattern!r} found in {name}: {found.group(0)!r}")
        return
    if not found:
        raise script.fatal(f"no match for {pattern!r} found in {name}")
    if count:
        have = len(regex.findall(text))
        if have != count:
            raise script.fatal(f"have {have} matches for {pattern!r}, want {count}")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A testscript pattern: a Go regular expression in multi-line mode (`(?m)` is prepended, as testscript does)."""
    return re.compile("(?m)" + pattern)


def _cmd_stdout(script: Script, neg: bool, args: list[str]) -> None:
    match(script, neg, args, script.stdout, "stdout")


def _cmd_stderr(script: Script, neg: bool, args: list[str]) -> None:
    match(script, neg, args, script.stderr, "stderr")


def _cmd_grep(script: Script, neg: bool, args: list[str]) -> None:
    match(script, neg, args, "", "grep")


def _cmd_exec(script: Script, neg: bool, args: list[str]) -> None:
    if not args or args == ["&"]:
        raise script.fatal("usage: exec program [args...] [&]")
    if _BACKGROUND.match(args[-1]):
        name = args[-1].strip("&")
        try:
            script.start_background(name, args[:-1], neg)
        except FileNotFoundError as exc:
            raise script.fatal(str(exc)) from None
        script.stdout = script.stderr = ""
        return
    try:
        out, err, code = script.exec(args)
    except FileNotFoundError as exc:
        script.set_output("", "")
        script.logf(f"[{exc}]")
        if not neg:
            raise script.fatal("unexpected command failure") from None
        return
    except TimeoutError as exc:
        raise script.fatal(str(exc)) from None
    script.set_output(out, err)
    if code != 0:
        script.logf(f"[exit status {code}]")
    if code == 0 and neg:
        raise script.fatal("unexpected command success")
    if code != 0 and not neg:
        raise script.fatal("unexpected command failure")


def _no_neg(script: Script, neg: bool, name: str) -> None:
    if neg:
        raise script.fatal(f"unsupported: ! {name}")


def _cmd_cd(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "cd")
    if len(args) != 1:
        raise script.fatal("usage: cd dir")
    target = script.mkabs(args[0])
    if not target.is_dir():
        raise script.fatal(f"directory {args[0]} does not exist")
    script.cd = target.resolve()
    script.logf(str(script.cd))


def _cmd_chmod(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "chmod")
    if len(args) < 2:
        raise script.fatal("usage: chmod perm paths...")
    try:
        mode = int(args[0], 8)
    except ValueError:
        raise script.fatal(f"invalid mode {args[0]!r}") from None
    if mode > 0o777:
        raise script.fatal(f"unsupported file mode {args[0]}")
    for path in args[1:]:
        script.mkabs(path).chmod(mode)


def _read_source(script: Script, name: str) -> bytes:
    if name == "stdout":
        return script.stdout.encode()
    if name == "stderr":
        return script.stderr.encode()
    try:
        return script.mkabs(name).read_bytes()
    except OSError as exc:
        raise script.fatal(str(exc)) from None


def _cmd_cmp(script: Script, neg: bool, args: list[str], *, env: bool = False) -> None:
    name = "cmpenv" if env else "cmp"
    if len(args) != 2:
        raise script.fatal(f"usage: {name} file1 file2")
    text1 = _read_source(script, args[0]).decode(errors="replace")
    text2 = _read_source(script, args[1]).decode(errors="replace")
    if env:
        text2 = expand(text2, script.getenv)
    if (text1 == text2) == neg:
        what = "have same content" if neg else "differ"
        raise script.fatal(f"{args[0]} and {args[1]} {what}")


def _cmd_cmpenv(script: Script, neg: bool, args: list[str]) -> None:
    _cmd_cmp(script, neg, args, env=True)


def _cmd_cp(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "cp")
    if len(args) < 2:
        raise script.fatal("usage: cp src... dst")
    dst = script.mkabs(args[-1])
    dst_is_dir = dst.is_dir()
    if len(args) > 2 and not dst_is_dir:
        raise script.fatal(f"cp: destination {args[-1]} is not a directory")
    for src in args[:-1]:
        data = _read_source(script, src)
        mode = 0o666
        if src not in ("stdout", "stderr"):
            mode = script.mkabs(src).stat().st_mode & 0o777
        target = dst / Path(src).name if dst_is_dir else dst
        target.write_bytes(data)
        target.chmod(mode)


def _cmd_env(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "env")
    if not args:
        for key, value in script.env.items():
            script.logf(f"{key}={value}")
        return
    for item in args:
        key, sep, value = item.partition("=")
        if not sep:
            script.logf(f"{key}={script.getenv(key)}")
        else:
            script.setenv(key, value)


def _cmd_exists(script: Script, neg: bool, args: list[str]) -> None:
    readonly = bool(args) and args[0] == "-readonly"
    if readonly:
        args = args[1:]
    if not args:
        raise script.fatal("usage: exists [-readonly] file...")
    for name in args:
        path = script.mkabs(name)
        exists = path.exists()
        if exists and neg:
            what = "directory" if path.is_dir() else "file"
            raise script.fatal(f"{what} {path} unexpectedly exists")
        if not exists and not neg:
            raise script.fatal(f"{path} does not exist")
        if exists and not neg and readonly and path.stat().st_mode & 0o222:
            raise script.fatal(f"{path} exists but is writable")


def _cmd_mkdir(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "mkdir")
    if not args:
        raise script.fatal("usage: mkdir dir...")
    for name in args:
        script.mkabs(name).mkdir(parents=True, exist_ok=True)


def _cmd_mv(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "mv")
    if len(args) != 2:
        raise script.fatal("usage: mv old new")
    os.replace(script.mkabs(args[0]), script.mkabs(args[1]))


def _cmd_rm(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "rm")
    if not args:
        raise script.fatal("usage: rm file...")
    for name in args:
        path = script.mkabs(name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _cmd_skip(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "skip")
    if len(args) > 1:
        raise script.fatal("usage: skip [msg]")
    raise ScriptSkip(args[0] if args else "skip")


def _cmd_stop(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "stop")
    if len(args) > 1:
        raise script.fatal("usage: stop [msg]")
    script.logf(f"stop: {args[0] if args else ''}")
    raise _ScriptStop()


def _cmd_stdin(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "stdin")
    if len(args) != 1:
        raise script.fatal("usage: stdin filename")
    script.stdin = _read_source(script, args[0]).decode(errors="replace")


def _cmd_symlink(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "symlink")
    if len(args) != 3 or args[1] != "->":
        raise script.fatal("usage: symlink file -> target")
    script.mkabs(args[0]).symlink_to(args[2])


def _cmd_unquote(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "unquote")
    for name in args:
        path = script.mkabs(name)
        data = path.read_text()
        if not data.startswith(">") or not data.endswith("\n"):
            raise script.fatal(f"{name}: data does not appear to be quoted")
        path.write_text(data[1:].replace("\n>", "\n"))


def _cmd_wait(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "wait")
    if len(args) > 1:
        raise script.fatal("usage: wait [name]")
    script.wait_background(args[0] if args else "")


def _cmd_kill(script: Script, neg: bool, args: list[str]) -> None:
    _no_neg(script, neg, "kill")
    sig = signal.SIGKILL
    if args and args[0].startswith("-"):
        names = {"KILL": signal.SIGKILL, "INT": signal.SIGINT}
        if args[0][1:] not in names:
            raise script.fatal(f"unknown signal: {args[0][1:]}")
        sig = names[args[0][1:]]
        args = args[1:]
    if len(args) > 1:
        raise script.fatal("usage: kill [-SIGNAL] [name]")
    script.kill_background(args[0] if args else "", sig)


def _unsupported(name: str, why: str) -> Command:
    def command(script: Script, neg: bool, args: list[str]) -> None:
        raise script.fatal(f"{name}: {why}")

    return command


BUILTINS: dict[str, Command] = {
    "cd": _cmd_cd,
    "chmod": _cmd_chmod,
    "cmp": _cmd_cmp,
    "cmpenv": _cmd_cmpenv,
    "cp": _cmd_cp,
    "env": _cmd_env,
    "exec": _cmd_exec,
    "exists": _cmd_exists,
    "grep": _cmd_grep,
    "kill": _cmd_kill,
    "mkdir": _cmd_mkdir,
    "mv": _cmd_mv,
    "rm": _cmd_rm,
    "skip": _cmd_skip,
    "stderr": _cmd_stderr,
    "stdin": _cmd_stdin,
    "stdout": _cmd_stdout,
    "stop": _cmd_stop,
    "symlink": _cmd_symlink,
    "unquote": _cmd_unquote,
    "wait": _cmd_wait,
    "ttyin": _unsupported("ttyin", "pseudo-terminals are not supported by this runner"),
    "ttyout": _unsupported("ttyout", "pseudo-terminals are not supported by this runner"),
}
