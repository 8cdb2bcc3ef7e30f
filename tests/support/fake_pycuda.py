"""A recording stand-in for `pycuda.driver`, which needs a GPU and a CUDA driver (none exist here).

It models only the context rules of pycuda's src/cpp/cuda.hpp that skdeploy's PyCudaMemory depends on:
- each thread has a CUDA context stack (`cuda.stacks[thread]`) and pycuda keeps its own stack beside it;
- Context.push() pushes both; Context.pop() pops both; it fails when pycuda's stack is empty;
- detach() of a primary context that is not current pushes it on the CUDA stack and releases it without
  popping (cuDevicePrimaryCtxRelease never pops), so the CUDA stack keeps one more entry;
- a Stream is destroyed when its last reference goes: inside its context (current in this thread) it is
  destroyed; otherwise pycuda warns "Stream in out-of-thread context could not be cleaned up" and leaks it.
Device allocations and page-locked arrays are counted so a test can see that all were freed.
"""
import threading
import types
import warnings

import numpy as np


def make_fake_pycuda(devices=2):
    cuda = types.ModuleType("pycuda.driver")
    cuda.stacks = {}  # thread id -> CUDA context stack (list of contexts)
    cuda.retained = {}  # device index -> primary context retain count
    cuda.live = {"streams": 0, "allocations": 0, "pinned": 0}
    cuda.leaked_streams = 0
    cuda.Error = type("Error", (Exception,), {})
    local = threading.local()

    def cuda_stack():
        return cuda.stacks.setdefault(threading.get_ident(), [])

    def pycuda_stack():
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    def current():
        stack = cuda_stack()
        return stack[-1] if stack else None

    cuda.current = current
    cuda.init = lambda: None

    class Context:
        def __init__(self, device):
            self.device, self.valid = device, True

        def push(self):
            cuda_stack().append(self)
            pycuda_stack().append(self)

        @staticmethod
        def pop():
            if not pycuda_stack():
                raise cuda.Error("context::pop failed: invalid device context - cannot pop non-current context")
            pycuda_stack().pop()
            cuda_stack().pop()

        def detach(self):
            if current() is not self:
                cuda_stack().append(self)  # cuCtxPushCurrent, then a release that does not pop
            cuda.retained[self.device] -= 1
            self.valid = False

    class Device:
        def __init__(self, index):
            if index >= devices:
                raise cuda.Error(f"cuDeviceGet failed: invalid device ordinal {index}")
            self.index = index

        def retain_primary_context(self):
            cuda.retained[self.index] = cuda.retained.get(self.index, 0) + 1
            return Context(self.index)

        def compute_capability(self):
            return (8, 7)

        def name(self):
            return "Fake Orin"

    class Stream:
        def __init__(self):
            self.context = current()
            assert self.context is not None, "cuStreamCreate needs a current context"
            self.handle = id(self)
            cuda.live["streams"] += 1

        def synchronize(self):
            pass

        def __del__(self):
            if current() is self.context:
                cuda.live["streams"] -= 1
            else:
                cuda.leaked_streams += 1
                warnings.warn("Stream in out-of-thread context could not be cleaned up", stacklevel=2)

    class Allocation(int):
        def free(self):
            assert current() is not None, "cuMemFree needs a current context"
            cuda.live["allocations"] -= 1

    def mem_alloc(nbytes):
        assert current() is not None, "cuMemAlloc needs a current context"
        cuda.live["allocations"] += 1
        return Allocation(0x10000 + cuda.live["allocations"])

    class Pinned(np.ndarray):
        def free(self):
            cuda.live["pinned"] -= 1

    def pagelocked_empty(nbytes, dtype):
        cuda.live["pinned"] += 1
        return Pinned(nbytes, dtype)

    cuda.Context, cuda.Device, cuda.Stream = Context, Device, Stream
    cuda.mem_alloc, cuda.pagelocked_empty = mem_alloc, pagelocked_empty
    cuda.memcpy_htod_async = cuda.memcpy_dtoh_async = lambda *args: None
    return cuda
