"""Where a data set came from, as "kind:path" (images:photos/, fashion-mnist:data/...): the name reports,
validation records and saved references give the data, and the path a later run reads it from again."""


class DataOrigin(str):
    """"kind:path" as text (so records and messages hold it as is), with its two parts."""

    @classmethod
    def of(cls, kind: str, path: object) -> "DataOrigin":
        return cls(f"{kind}:{path}")

    @classmethod
    def parse(cls, text: str) -> "DataOrigin":
        """The origin `text` names; ValueError unless it is "kind:path" with both parts."""
        kind, sep, path = str(text).partition(":")
        if not (sep and kind and path):
            raise ValueError(f"a data origin is KIND:PATH, got {text!r}")
        return cls(text)

    @property
    def kind(self) -> str:
        return self.partition(":")[0]

    @property
    def path(self) -> str:
        return self.partition(":")[2]
