"""Shared test helpers: run ``esl`` in-process and check the one-line user-error convention."""
import cli


def run_cli(capsys, *args):
    """Run ``esl ARGS`` through ``cli.main`` in-process; returns (exit code, stdout, stderr)."""
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, *words):
    """Exit code 2, exactly one non-empty stderr line starting ``esl: error:``, no traceback, ``words`` in it."""
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("esl: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
