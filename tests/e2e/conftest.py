"""Fixtures the end-to-end modules share."""
import sys

import pytest

from tests.support.fake_engines import write_fake_engine
from tests.support.fake_tensorrt import make_fake_tensorrt


@pytest.fixture
def fake_trt(monkeypatch):
    """install(version) puts the recording fake in place of `tensorrt` for one test."""

    def install(version):
        module = make_fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    return install



@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """(engine path, fake trt module, fake memory) with a sidecar for TensorRT-RTX 1.7.1 on sm_86."""
    return write_fake_engine(tmp_path, monkeypatch)
