"""scripts/plant_bugs.py measures the unit tier by planting slips at exact anchors in the source. An
anchor the code has moved away from would plant nothing and read as a kill or a survivor; the script
checks every anchor first. (Not in the unit tier: a planted copy of the package lacks its own anchor.)"""
import importlib.util

import pytest

from tests.support.bad_input_cases import REPO


@pytest.fixture
def plant_bugs():
    spec = importlib.util.spec_from_file_location("plant_bugs", REPO / "scripts" / "plant_bugs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_anchor_is_in_the_source_exactly_once(plant_bugs):
    assert plant_bugs.stale_anchors() == []
    assert plant_bugs.main(["--check"]) == 0


def test_a_stale_anchor_is_named_and_stops_the_run_before_any_planting(plant_bugs, monkeypatch, capsys):
    stale = dict(plant_bugs.BUGS, moved=("skdeploy/compare.py", "a line the code no longer has", "x"),
                 twice=("skdeploy/compare.py", "\n    return ", "x"))
    monkeypatch.setattr(plant_bugs, "BUGS", stale)
    monkeypatch.setattr(plant_bugs, "failing_tests", lambda copy: pytest.fail("planted despite a stale anchor"))
    assert plant_bugs.stale_anchors() == ["moved", "twice"]
    assert plant_bugs.main([]) == 2
    out = capsys.readouterr().out
    assert "moved" in out and "twice" in out and out.count("STALE") == 2
