"""The fewest-layers search of debug-precision on counting functions whose answer is known: greedy in rank
order, then pruning what the target does not need."""
from skdeploy.calib.sensitivity import _fewest_wide


def counter(base, effects, runs):
    """Agreeing samples out of 100 with `wide` kept wide: `base` plus each layer's effect; records each call."""
    def correct(wide, description):
        runs.append(list(wide))
        return base + sum(effects.get(name, 0) for name in wide)
    return correct


def test_greedy_then_pruning_keeps_only_what_the_target_needs():
    runs = []
    search = _fewest_wide(["a", "b", "c", "d"], 90, 100, 0.99, counter(90, {"a": 5, "c": 5}, runs), "fp16")
    assert search["met"] and search["minimal"] == ["a", "c"] and search["agreement"] == 1.0
    assert [(s["action"], s["layer"], s["agreement"]) for s in search["steps"]] == [
        ("start", None, 0.9), ("add", "a", 0.95), ("add", "b", 0.95), ("add", "c", 1.0),
        ("drop", "b", 1.0), ("keep", "a", 0.95)]
    assert ["d"] not in runs and len(runs) == 5  # stops adding at the target; every step measured once


def test_a_target_already_met_needs_nothing_and_an_unreachable_one_says_so():
    runs = []
    assert _fewest_wide(["a"], 99, 100, 0.99, counter(99, {}, runs), "fp16")["minimal"] == [] and runs == []
    search = _fewest_wide(["a", "b"], 90, 100, 0.99, counter(90, {"a": 1, "b": 1}, runs), "fp32")
    assert not search["met"] and search["minimal"] is None and search["agreement"] == 0.92
