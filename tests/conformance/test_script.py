"""The testscript engine: word splitting, expansion, conditions, negation, matching and the built-in commands,
as go-internal's testscript defines them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance import txtar
from conformance.script import Script, ScriptFailure, ScriptSkip, compile_pattern, go_expand, parse_line
from conformance.suite import conditions, default_suite_dir, discover

ENV = {"A": "x y", "W": "/work", "EMPTY": "", "DOT": "a.b"}


def _getenv(key: str) -> str:
    return ENV.get(key, "")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("cog predict $W -i s=world", ["cog", "predict", "/work", "-i", "s=world"]),
        ("stdout '\"x\":1' # a comment", ["stdout", '"x":1']),
        ("exec sh -c 'a b''c' $A", ["exec", "sh", "-c", "a b'c", "x y"]),  # '' is a quote; $A stays one word
        ("x '' y", ["x", "", "y"]),  # an empty quoted word is a word
        ("echo $EMPTY z", ["echo", "", "z"]),  # so is an empty expansion
        ("a$A'$A'b", ["ax y$Ab"]),  # no expansion inside quotes; chunks join into one word
        ("  \t ", []),
        ("# only a comment", []),
        ('curl POST /p \'{"id":"$W"}\'', ["curl", "POST", "/p", '{"id":"$W"}']),
        ("stdout ${DOT@R}", ["stdout", r"a\.b"]),  # @R quotes the value for a regular expression
    ],
)
def test_parse_line(line: str, words: list[str]) -> None:
    assert parse_line(line, _getenv) == words


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ScriptFailure, match="unterminated quoted argument"):
        parse_line("stdout 'oops", _getenv)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$W/x", "/work/x"),
        ("${W}x", "/workx"),
        ("cost $", "cost $"),  # a final $ stays
        ("a$-b", "ab"),  # a shell special variable, empty here
        ("${}x", "x"),  # bad syntax is eaten, as Go does
        ("$$", ""),  # $$ names the variable "$" (testscript sets it to "$")
        ("$NOPE.", "."),
    ],
)
def test_go_expand(text: str, expanded: str) -> None:
    assert go_expand(text, _getenv) == expanded


def _script(tmp_path: Path, commands: dict[str, object] | None = None, short: bool = False) -> Script:
    env = {"PATH": "/usr/bin:/bin", "WORK": str(tmp_path), "HOME": str(tmp_path)}
    return Script("t", tmp_path, env, commands or {}, condition=conditions(short))  # type: ignore[arg-type]


def test_stdout_patterns_are_multiline_and_negatable(tmp_path: Path) -> None:
    script = _script(tmp_path)
    script.run("exec printf 'one\\ntwo\\n'\nstdout '^two$'\n! stdout '^one two$'\nstdout -count=2 '^[a-z]+$'\n")
    script = _script(tmp_path)
    with pytest.raises(ScriptFailure, match=re.escape("unexpected match for '^one' found in stdout: 'one'")):
        script.run("exec printf 'one\\n'\n! stdout '^one'\n")
    with pytest.raises(ScriptFailure, match="have 2 matches for 'o', want 1"):
        _script(tmp_path).run("exec printf 'oo'\nstdout -count=1 o\n")
    with pytest.raises(ScriptFailure, match="cannot use -count= with negated match"):
        _script(tmp_path).run("! stdout -count=1 o\n")


def test_exec_status_and_negation(tmp_path: Path) -> None:
    _script(tmp_path).run("exec true\n! exec false\n! exec a-program-that-does-not-exist\n")
    with pytest.raises(ScriptFailure, match="unexpected command failure"):
        _script(tmp_path).run("exec false\n")
    with pytest.raises(ScriptFailure, match="unexpected command success"):
        _script(tmp_path).run("! exec true\n")


def test_stderr_stdin_env_and_cd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "in.txt").write_text("from stdin\n")
    script = _script(tmp_path)
    script.run(
        "env GREETING=hola\n"
        "exec sh -c 'echo $GREETING >&2'\n"
        "stderr hola\n"
        "! stdout .\n"
        "stdin in.txt\n"
        "exec cat\n"
        "stdout 'from stdin'\n"
        "cd sub\n"
        "exec pwd\n"
        "stdout '/sub$'\n"
    )


def test_files_commands(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    script = _script(tmp_path)
    script.run(
        "mkdir d/e\n"
        "cp a.txt d/e/b.txt\n"
        "exists d/e/b.txt\n"
        "grep '^alpha$' d/e/b.txt\n"
        "exec echo hello\n"
        "cp stdout out.txt\n"
        "cmp out.txt stdout\n"
        "rm d\n"
        "! exists d\n"
        "mv a.txt c.txt\n"
        "exists c.txt\n"
    )
    assert (tmp_path / "out.txt").read_text() == "hello\n"


def test_conditions_skip_and_stop(tmp_path: Path) -> None:
    _script(tmp_path, short=False).run("[short] exec false\n[!short] exec true\n[linux] exec true\n")
    with pytest.raises(ScriptSkip, match="slow"):
        _script(tmp_path, short=True).run("[short] skip 'slow'\nexec false\n")
    _script(tmp_path).run("stop 'done early'\nexec false\n")
    with pytest.raises(ScriptFailure, match="unknown condition 'gpu'"):
        _script(tmp_path).run("[gpu] exec true\n")


def test_unknown_command(tmp_path: Path) -> None:
    with pytest.raises(ScriptFailure, match="unknown command 'frobnicate'"):
        _script(tmp_path).run("frobnicate\n")


def test_background_exec_and_wait(tmp_path: Path) -> None:
    script = _script(tmp_path)
    script.run("exec sh -c 'sleep 0.2; echo bg' &\nexec echo fg\nstdout fg\nwait\nstdout bg\n")
    with pytest.raises(ScriptFailure, match="exit status 3"):
        _script(tmp_path).run("exec sh -c 'exit 3' &\nwait\n")


def test_harness_commands_see_their_output_as_the_last_output(tmp_path: Path) -> None:
    def shout(script: Script, neg: bool, args: list[str]) -> None:
        out = script.output()
        (out.stderr if neg else out.stdout).write(" ".join(args).upper())

    script = _script(tmp_path, {"shout": shout})
    script.run(
        "exec echo before\nshout hi there\nstdout 'HI THERE'\n! stderr .\n! shout quiet\nstderr QUIET\n! stdout .\n"
    )


def test_cleanups_run_even_when_the_script_fails(tmp_path: Path) -> None:
    ran: list[str] = []
    script = _script(tmp_path)
    script.defer(lambda: ran.append("first"))
    script.defer(lambda: ran.append("second"))
    with pytest.raises(ScriptFailure):
        script.run("exec false\n")
    assert ran == ["second", "first"]


SUITE = default_suite_dir()


@pytest.mark.skipif(SUITE is None, reason="Cog's suite (../shared/conformance/cog/tests) is not there")
def test_every_pattern_in_the_suite_compiles_in_python() -> None:
    """The suite's patterns are Go (RE2) regular expressions; each one must mean the same in Python's `re`,
    which holds for RE2's syntax except a few constructs the suite does not use (checked here)."""
    assert SUITE is not None
    patterns = 0
    for path in discover(SUITE):
        script = txtar.parse(path.read_bytes()).comment.decode()
        for line in script.splitlines():
            words = parse_line(line, lambda key: "")
            while words and words[0].startswith("["):
                words = words[1:]
            if words and words[0] == "!":
                words = words[1:]
            if words and words[0] in ("stdout", "stderr", "grep"):
                pattern = next(w for w in words[1:] if not w.startswith("-count="))
                assert not re.search(r"\\[zCpPQE]|\(\?[^:)]*[sU]", pattern), (path.name, pattern)
                compile_pattern(pattern)
                patterns += 1
    assert patterns > 400
