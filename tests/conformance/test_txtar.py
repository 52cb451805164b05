"""The txtar parser: what golang.org/x/tools/txtar (as go-internal reads it) gives for the same bytes."""

from conformance.txtar import File, parse


def test_comment_then_files() -> None:
    archive = parse(b"# script\nexec true\n-- a.txt --\nhello\n-- dir/b.py --\nx = 1\n\n")
    assert archive.comment == b"# script\nexec true\n"
    assert archive.files == [File("a.txt", b"hello\n"), File("dir/b.py", b"x = 1\n\n")]


def test_final_newline_is_added_where_missing() -> None:
    archive = parse(b"stop\n-- a --\nno newline")
    assert archive.files == [File("a", b"no newline\n")]
    assert parse(b"only a script").comment == b"only a script\n"


def test_empty_files_and_names_with_spaces_trimmed() -> None:
    archive = parse(b"-- empty --\n--  spaced name.txt  --\ndata\n")
    assert archive.comment == b""
    assert archive.files == [File("empty", b""), File("spaced name.txt", b"data\n")]


def test_marker_lines_only_at_line_start_and_with_both_dashes() -> None:
    data = b"x\n  -- not a marker --\n-- also not a marker\n-- real --\nbody -- x --\n"
    archive = parse(data)
    assert archive.comment == b"x\n  -- not a marker --\n-- also not a marker\n"
    assert archive.files == [File("real", b"body -- x --\n")]


def test_crlf_marker_lines() -> None:
    archive = parse(b"s\r\n-- f --\r\ndata\r\n")
    assert archive.comment == b"s\r\n"
    assert archive.files == [File("f", b"data\r\n")]
