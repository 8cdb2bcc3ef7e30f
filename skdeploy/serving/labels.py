"""Class names for a model, as runtimes list them: the dataset's names, else the class indices."""
from __future__ import annotations

from collections.abc import Sequence

from ..data import class_names_for
from ..errors import UsageError


def class_labels(manifest: dict, data_names: Sequence[str] | None = None) -> list:
    """One name per output class, from the manifest's dataset, else the data's own class names
    (`data_names`, e.g. an image folder's subfolders) when there is one per class, else "0", "1", ..."""
    model = manifest.get("model") or {}
    names = class_names_for(model.get("dataset"))
    if names:
        return list(names)
    count = model.get("num_classes")
    if data_names and (count is None or len(data_names) == count):
        return list(data_names)
    if not isinstance(count, int) or count < 1:
        raise UsageError("the manifest records neither a dataset nor a class count; labels cannot be written")
    return [str(index) for index in range(count)]
