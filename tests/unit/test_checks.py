"""compare.Check and data.DataOrigin: a threshold check decides once and describes itself one way, also when read
back as JSON; a data origin splits into kind and path in one place."""
import json

import pytest

from skdeploy.compare import Check


@pytest.mark.parametrize("value, limit, rule, passed", [
    (0.995, 0.99, ">=", True), (0.98, 0.99, ">=", False), (0.5, 0.5, "<=", True), (0.6, 0.5, "<=", False),
    (0, 0, "==", True), (3, 0, "==", False)])
def test_a_check_decides_by_its_rule(value, limit, rule, passed):
    assert Check.of("x", value, limit, rule)["passed"] is passed


def test_a_number_check_describes_value_rule_and_limit():
    assert Check.of("cosine", 0.523456, 0.99, ">=").describe() == "cosine 0.5235 vs limit >= 0.99"


def test_a_text_check_describes_itself_without_number_formats():
    check = Check.of("manifest preprocessing", "std [0.5]", "the reference's std [1.0]", "==", passed=False)
    assert check.describe() == "manifest preprocessing std [0.5] vs the reference's std [1.0]"
    assert check["passed"] is False


def test_a_check_read_back_from_json_describes_itself_the_same_way():
    check = Check.of("SNR dB", -33.81, 60, ">=")
    assert Check(json.loads(json.dumps(check))).describe() == check.describe() == "SNR dB -33.81 vs limit >= 60"


def test_a_data_origin_is_its_text_with_kind_and_path():
    from skdeploy.data import DataOrigin

    origin = DataOrigin.of("images", "photos/a:b")
    assert origin == "images:photos/a:b" and (origin.kind, origin.path) == ("images", "photos/a:b")
    assert DataOrigin.parse(json.loads(json.dumps(origin))).path == "photos/a:b"


@pytest.mark.parametrize("text", ["photos", ":photos", "images:"])
def test_text_without_kind_and_path_is_no_data_origin(text):
    from skdeploy.data import DataOrigin

    with pytest.raises(ValueError, match="KIND:PATH"):
        DataOrigin.parse(text)
