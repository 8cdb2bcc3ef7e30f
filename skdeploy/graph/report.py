"""What a graph pass reports: each pass has its own report type that says in words what it did."""
from dataclasses import dataclass, field, fields
from typing import ClassVar

ADDED_BY_PIPELINE = ("node_counts_before", "node_counts_after", "seconds")


@dataclass(kw_only=True)
class PassReport:
    """Base of the pass reports. Each pass declares its own fields, `left` ([{left_key, reason}]) among
    them, and says them in `headline()`; the pipeline adds node counts by op type before and after the pass
    and its time. `as_dict()` is the form stored in manifests (the pass's fields, then the pipeline's,
    then the printed summary line); `from_dict` reads that form back."""

    name: ClassVar[str]  # the pass, as manifests and --json name it
    left_key: ClassVar[str]  # what one entry of `left` names: a node or a block
    node_counts_before: dict = field(default_factory=dict)
    node_counts_after: dict = field(default_factory=dict)
    seconds: float = 0.0

    def headline(self) -> str:
        """What the pass did, in one phrase (subclasses)."""
        raise NotImplementedError

    def describe(self) -> list:
        """Lines for the terminal: the headline with the node count change, then what was left and why."""
        nodes = f"nodes {sum(self.node_counts_before.values())} -> {sum(self.node_counts_after.values())}"
        return ([f"{self.name}: {self.headline()}; {nodes}"]
                + [f"  left {entry[self.left_key]}: {entry['reason']}" for entry in self.left])

    def as_dict(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ADDED_BY_PIPELINE}
        added = {name: getattr(self, name) for name in ADDED_BY_PIPELINE}
        return {"name": self.name, **own, **added, "summary": self.describe()[0]}

    @classmethod
    def from_dict(cls, entry: dict) -> "PassReport":
        return cls(**{key: value for key, value in entry.items() if key not in ("name", "summary")})
