"""The logger's verbosity: what each level shows on stderr, that a block's verbosity and rewrite end with
the block (normally, by an exception, nested), and that a CLI command's --json holds only for that command."""
import pytest

from skdeploy.log import DEBUG, INFO, QUIET, VERBOSE, WARNING, log
from tests.support.helpers import run_cli


@pytest.fixture(autouse=True)
def default_state():
    """Every test starts from, and must leave, the state a fresh process has."""
    assert (log.level, log.rewrite("`x`")) == (INFO, "`x`")
    yield
    assert (log.level, log.rewrite("`x`")) == (INFO, "`x`")


def say_everything():
    """One message of each kind the library emits, a progress bar of 3 items and a spinner."""
    log.info("step one")
    log.warning("careful")
    with log.progress(3, "counting") as advance:
        advance()
        advance(2)
    with log.status("working"):
        pass


def test_debug_lines_show_only_when_verbose_each_on_one_literal_line(capsys):
    detail = "builder config: profile input min [1, 3, 224, 224] [bold]not markup[/bold]; " + "x" * 120
    log.debug(detail)
    assert capsys.readouterr().err == ""
    with log.verbosity(VERBOSE):
        log.debug(detail)
        log.info("step one")
    assert capsys.readouterr().err == f"debug: {detail}\nstep one\n"  # not wrapped at 80 columns


def test_quiet_is_the_warning_level():
    assert (VERBOSE, INFO, QUIET) == (DEBUG, 20, WARNING) and DEBUG < INFO < WARNING


def test_default_verbosity_shows_messages_progress_and_steps(capsys):
    say_everything()
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["step one", "warning: careful"]
    assert lines[2].startswith("counting") and "3/3" in lines[2]  # the bar's last frame: 3 of 3 done
    assert lines[3:] == ["working"]  # not a terminal: the spinner's message as a line


def test_quiet_keeps_only_warnings(capsys):
    with log.verbosity(QUIET):
        say_everything()
    assert capsys.readouterr().err == "warning: careful\n"


def test_above_warning_shows_nothing(capsys):
    with log.verbosity(WARNING + 1):
        say_everything()
    assert capsys.readouterr().err == ""


def test_the_level_returns_after_the_block_and_the_block_sees_its_own():
    with log.verbosity(QUIET) as inside:
        assert inside is log and log.level == QUIET
        assert not log.shows(INFO) and log.shows(WARNING)
    assert log.level == INFO and log.shows(INFO)


def test_the_level_returns_when_the_block_raises():
    with pytest.raises(KeyError):
        with log.verbosity(QUIET):
            raise KeyError("boom")
    assert log.level == INFO


def test_nested_blocks_restore_one_level_each():
    with log.verbosity(QUIET):
        with log.verbosity(INFO):
            assert log.level == INFO
            with log.verbosity(WARNING + 5):
                assert log.level == WARNING + 5
            assert log.level == INFO
        assert log.level == QUIET


def test_rewriting_applies_to_messages_and_bars_inside_the_block_only(capsys):
    with log.rewriting(lambda message: message.replace("`calib_images`", "--calib-images")):
        log.info("fewer than `calib_images`")
        log.warning("`calib_images` is large")
        with log.progress(1, "`calib_images` pass") as advance:
            advance()
    log.info("`calib_images` again")
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["fewer than --calib-images", "warning: --calib-images is large"]
    assert lines[2].startswith("--calib-images pass")
    assert lines[3] == "`calib_images` again"


def test_a_json_command_is_quiet_while_it_runs_and_leaves_the_level_as_it_was(monkeypatch):
    seen = []

    def list_models():
        seen.append(log.level)
        return []

    monkeypatch.setattr("skdeploy.models.list_models", list_models)
    assert run_cli("models", "--json").exit_code == 0
    assert run_cli("models").exit_code == 0
    assert seen == [QUIET, INFO]  # the second run is not silenced by the first; the fixture checks after


def test_a_json_command_that_fails_leaves_no_state_behind(tmp_path):
    result = run_cli("inspect", tmp_path / "missing.onnx", "--json")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_a_command_keeps_a_callers_verbosity_without_json(monkeypatch):
    seen = []
    monkeypatch.setattr("skdeploy.models.list_models", lambda: seen.append(log.level) or [])
    with log.verbosity(WARNING + 1):
        assert run_cli("models").exit_code == 0
    assert seen == [WARNING + 1]
