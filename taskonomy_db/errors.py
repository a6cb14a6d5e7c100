"""Named errors the library raises; the CLI turns each into a one-line message and an exit code."""


class TdbError(Exception):
    """Base class: a problem with the user's input or workspace, reported without a traceback."""

    exit_code = 1


class WorkspaceError(TdbError):
    """The workspace is missing, malformed, or from a newer schema."""


class StoreUnreadableError(WorkspaceError):
    """The workspace's DuckDB file is corrupt or truncated: DuckDB refuses to read it."""


class IngestError(TdbError):
    """The dataset cannot be ingested as it is."""


class QueryError(TdbError):
    """A user query failed or tried to write without permission."""


class UnknownTaskError(TdbError):
    """A task, domain or encoder name that is not registered."""


class InfeasibleError(TdbError):
    """An optimisation problem has no feasible solution."""

    exit_code = 2


class DataError(TdbError):
    """The images or labels a task needs are missing or cannot be decoded."""


class TrainingError(TdbError):
    """A task network cannot be trained (no data, empty split) or its checkpoint is unusable."""


class ExportError(TdbError):
    """An encoder cannot be exported to ONNX, or the export fails its checks (checker, parity)."""


class EncoderError(TdbError):
    """An ONNX encoder does not match its registration or the dataset (hash, input shape), or is unusable."""


class GenerateError(TdbError):
    """The dataset generator's settings or output folder are unusable."""


class WorkerDiedError(TdbError):
    """A worker process of a pool died mid-run (killed, out of memory, or unable to load the code it was sent)."""
