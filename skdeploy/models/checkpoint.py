"""Checkpoint loading that never unpickles code: torch.load(weights_only=True), then unwrap the common
containers ({'state_dict': ...}, {'model': ...}, DataParallel's 'module.' prefix)."""
from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

from ..errors import SkdeployError
from ..fileio import existing_file

if TYPE_CHECKING:
    from torch import nn

    from ..fileio import PathLike

_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "net")


def read_state_dict(path: PathLike) -> dict:
    import torch

    path = existing_file(path, "checkpoint")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise SkdeployError(f"checkpoint {path} is not readable (permission denied)") from None
    except pickle.UnpicklingError as exc:
        # safe loading names a refused class "Unsupported global"; any other complaint (an unknown
        # opcode, a short read) means the bytes are not a pickle at all: random, truncated, not a checkpoint
        if "Unsupported global" in str(exc):
            raise SkdeployError(
                f"checkpoint {path} holds Python objects beyond tensors, which safe loading "
                "(torch.load weights_only=True) refuses because unpickling them could run code; "
                "re-save it as a plain state_dict: torch.save(model.state_dict(), PATH)") from None
        raise SkdeployError(f"{path} is not a PyTorch checkpoint (corrupt or truncated: "
                            f"{_unpickler_complaint(exc)})") from None
    except Exception as exc:  # torch.load raises many kinds (IndexError, EOFError, ...) for non-checkpoints
        raise SkdeployError(f"{path} is not a PyTorch checkpoint ({_first_sentence(exc)})") from None
    return unwrap_state_dict(loaded, path)


def _first_sentence(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(". ")[0].rstrip(".") if text else type(exc).__name__


def _unpickler_complaint(exc) -> str:
    """The unpickler's own words from torch's long weights_only message, e.g. 'Unsupported operand 120'."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        if detail:
            return detail
    return _first_sentence(exc)


def unwrap_state_dict(loaded: object, path: str = "checkpoint") -> dict:
    import torch

    if isinstance(loaded, dict):
        for key in _CONTAINER_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or \
            not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise SkdeployError(f"{path} holds no state_dict (expected a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def apply_state_dict(module: nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """Load strictly; on mismatch name the missing, unexpected and wrongly shaped keys, and integer tensors
    given for floating-point parameters."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    # load_state_dict casts silently: int8 weights (a quantized or foreign checkpoint) would become whole numbers
    wrong_dtype = [f"{k} {str(state_dict[k].dtype).replace('torch.', '')}" for k in own
                   if k in state_dict and own[k].is_floating_point() and not state_dict[k].is_floating_point()]
    if missing or unexpected or wrong_shape or wrong_dtype:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", wrong_shape),
                            ("integer tensors for floating-point parameters", wrong_dtype)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise SkdeployError(f"{source} does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)
