"""The shipped demo checkpoint is pinned: same file, same predictions on a fixed slice of the test split.

A change to the weights, the SK unit's forward, or the demo preprocessing moves the correct count;
the FP32 reference and every candidate would share such a change, so no comparison test notices it.
"""
import json

import numpy as np
import pytest
import torch

from skdeploy.data import load_fashion_mnist
from skdeploy.fileio import sha256_file
from skdeploy.models import DEMO_MODEL, REGISTRY, load_model


@pytest.fixture(scope="module")
def record():
    config = REGISTRY[DEMO_MODEL]
    return json.loads(config.weights_path.with_suffix(".json").read_text())


def test_shipped_weights_are_the_recorded_file(record):
    assert sha256_file(REGISTRY[DEMO_MODEL].weights_path) == record["weights_sha256"]


def test_shipped_weights_give_their_recorded_accuracy_on_the_pinned_subset(record):
    pinned = record["pinned_subset"]
    pixels, labels = load_fashion_mnist(pinned["split"])
    count = pinned["first"]
    inputs = REGISTRY[DEMO_MODEL].preprocessing.arrays(pixels[:count])
    module = load_model().module
    with torch.no_grad():
        predictions = np.concatenate([module(torch.from_numpy(inputs[start:start + 500])).argmax(1).numpy()
                                      for start in range(0, count, 500)])
    correct = int((predictions == labels[:count]).sum())
    assert correct == pinned["correct"]
    # the slice stands for the whole split: within 2 points of the full-test-set accuracy
    assert abs(correct / count - record["test_top1"]) < 0.02
