"""tdb.toml, typed: one frozen dataclass per section, every setting with its default, its rule (type, bounds or
choices) and what it does, in one place. The workspace parses the file once when it opens and refuses a bad
one before any command starts; the flags that override a setting take their click type from the same rule, so
the flag and the file refuse the same values. Free of torch: `tdb --help` imports it.

    [study]     name, seed                          StudySettings
    [split]     train, val, test fractions          SplitSettings
    [train]     the task networks                   TrainSettings
    [transfer]  readouts and baselines              TransferSettings
    [analysis]  the bootstrap and win-rate rules    AnalysisSettings
    [demo]      which profile made the workspace    DemoSettings
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The names here and in the modules that use them are one list: the CLI reads them without importing torch.
BASELINES = ("gold", "scratch", "random")
TRAIN_SPLITS = ("val", "train")
NORMS = ("batch", "group")  # models/networks.py builds them
PROVIDERS = ("auto", "cpu", "cuda")  # onnxruntime execution providers for `tdb extract`
DTYPES = ("float16", "float32")  # how `tdb extract` stores representations
ESTIMATORS = ("logme", "ridge", "cka", "rsa")  # `tdb estimate`'s methods (taskonomy_db.estimators)
LABEL_ESTIMATORS = ("logme", "ridge")  # those that read the target's labels; the others compare representations
BEAM_FROM = ("measured", *(f"estimate:{method}" for method in ESTIMATORS))


@dataclass(frozen=True)
class Number:
    """An int (or any real number, for float) of at least `minimum`, or above it when `above`, and below
    `below` when given."""

    kind: type
    minimum: float
    above: bool = False
    below: float | None = None
    multiple_of: int | None = None

    def check(self, where: str, value: Any) -> str | None:
        """Why `value` is not such a number, or None when it is."""
        whole = self.kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            return f"{where} must be {'an integer' if whole else 'a number'}, got {value!r}"
        if not whole and not math.isfinite(value):  # TOML has nan and inf; neither is a fraction, a rate or a size
            return f"{where} must be a finite number, got {value!r}"
        if value < self.minimum or (self.above and value == self.minimum):
            bound = f"above {_shown(self.minimum)}" if self.above else f"at least {_shown(self.minimum)}"
            return f"{where} must be {bound}, got {value!r}"
        if self.below is not None and value >= self.below:
            return f"{where} must be below {_shown(self.below)}, got {value!r}"
        if self.multiple_of is not None and value % self.multiple_of:
            return f"{where} must be a multiple of {self.multiple_of}, got {value!r}"
        return None

    def describe(self) -> str:
        if self.minimum == ANY_INTEGER_MINIMUM:
            return "64-bit integer"
        bound = f"> {_shown(self.minimum)}" if self.above else f">= {_shown(self.minimum)}"
        below = f", < {_shown(self.below)}" if self.below is not None else ""
        multiple = f", a multiple of {self.multiple_of}" if self.multiple_of is not None else ""
        return f"{'integer' if self.kind is int else 'number'} {bound}{below}{multiple}"


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


ANY_INTEGER_MINIMUM = -(2**63)
ANY_INTEGER = Number(int, ANY_INTEGER_MINIMUM, below=2**63)  # a seed: a signed 64-bit integer


@dataclass(frozen=True)
class Text:
    """A string."""

    def check(self, where: str, value: Any) -> str | None:
        return None if isinstance(value, str) else f"{where} must be a string, got {value!r}"

    def describe(self) -> str:
        return "string"


@dataclass(frozen=True)
class Choice:
    """One of `values`."""

    values: tuple[str, ...]

    def check(self, where: str, value: Any) -> str | None:
        if value in self.values:
            return None
        return f"{where} must be one of {', '.join(self.values)}, got {value!r}"

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


@dataclass(frozen=True)
class Names:
    """A list of names, each one of `values` (`what` says what one is, for the error)."""

    values: tuple[str, ...]
    what: str

    def check(self, where: str, value: Any) -> str | None:
        if not isinstance(value, list | tuple) or not all(isinstance(name, str) for name in value):
            return f"{where} must be a list of names, got {value!r}"
        bad = [name for name in value if name not in self.values]
        if bad:
            return f"unknown {self.what} {bad[0]!r}; expected some of {', '.join(self.values)}"
        return None

    def describe(self) -> str:
        return "list of " + ", ".join(self.values)


Rule = Number | Text | Choice | Names


def setting(default: Any, rule: Rule, about: str) -> Any:
    """A dataclass field holding a setting: its default, the rule its values obey and what it does."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"rule": rule, "about": about})
    return field(default=default, metadata={"rule": rule, "about": about})


@dataclass(frozen=True)
class StudySettings:
    name: str = setting("study", Text(), "The study's name, in the report's title.")
    seed: int = setting(0, ANY_INTEGER, "The seed every other seed derives from.")


@dataclass(frozen=True)
class SplitSettings:
    train: float = setting(0.7, Number(float, 0), "Share of buildings whose images train the task networks.")
    val: float = setting(0.15, Number(float, 0), "Share whose images train the readouts (no task network saw them).")
    test: float = setting(0.15, Number(float, 0), "Share whose images every loss is measured on.")


@dataclass(frozen=True)
class TrainSettings:
    # Sized for a 2-core CPU at 64 px. Epochs are sized to the default dataset (576 views): 11 epochs there are
    # the steps 16 took on 384 views, and with the same steps the larger dataset more than doubled the depth
    # networks' gain over the mean map (0.12 and 0.16 against 0.03 and 0.07).
    # A multiple of the encoder's stride, ENCODER_STRIDE of models/networks.py (a test checks they agree).
    image_size: int = setting(64, Number(int, 8, multiple_of=8), "Side of the square images networks read.")
    epochs: int = setting(11, Number(int, 1), "Passes over the training images.")
    width: int = setting(16, Number(int, 1), "Channels of the first convolution.")
    depth: int = setting(1, Number(int, 0), "Residual blocks per encoder stage.")
    representation_channels: int = setting(8, Number(int, 1), "Channels of the representation an encoder exports.")
    norm: str = setting("batch", Choice(NORMS), "Encoder normalisation (batch folds into the convolutions).")
    batch_size: int = setting(16, Number(int, 2), "Images per step (batch norm needs two).")
    learning_rate: float = setting(0.003, Number(float, 0, above=True), "Peak learning rate.")
    weight_decay: float = setting(0.0001, Number(float, 0), "AdamW weight decay.")
    threads: int = setting(0, Number(int, 0), "Torch threads (0: torch's default).")


@dataclass(frozen=True)
class TransferSettings:
    # The schedule (a step budget, evaluation on the held-out images every `eval_every` steps, stop after
    # `patience` evaluations without improvement) was chosen by benchmarks/bench_schedule.py.
    train_split: str = setting("val", Choice(TRAIN_SPLITS), "Split readouts and scratch train on.")
    transfer_images: int = setting(256, Number(int, 1), "Images each readout trains on.")
    holdout_images: int = setting(64, Number(int, 1), "Images of other buildings of that split for early stopping.")
    max_steps: int = setting(1500, Number(int, 1), "Step budget of each readout and scratch network.")
    eval_every: int = setting(20, Number(int, 1), "Steps between evaluations on the held-out images.")
    patience: int = setting(5, Number(int, 1), "Evaluations without improvement before a readout stops.")
    batch_size: int = setting(32, Number(int, 2), "Images per step (the scratch network's batch norm needs two).")
    learning_rate: float = setting(0.003, Number(float, 0, above=True), "Readout learning rate.")
    weight_decay: float = setting(0.0001, Number(float, 0), "Readout weight decay.")
    readout_width: int = setting(16, Number(int, 1), "Channels of a readout's hidden layer.")
    max_order: int = setting(2, Number(int, 1), "Highest order of source sets.")
    beam: int = setting(5, Number(int, 1), "Beam width: orders 2-3 from the top BEAM sources, 4 from BEAM+1.")
    beam_from: str = setting(
        "measured",
        Choice(BEAM_FROM),
        "What ranks the sources for the beam: measured first-order affinities, or `tdb estimate`'s scores"
        " (then order 1 runs only for the sources the beam can reach).",
    )
    baselines: list[str] = setting(list(BASELINES), Names(BASELINES, "baseline"), "Baselines measured.")
    seeds: int = setting(1, Number(int, 1, below=101), "Readouts per source set, each with its own derived seed.")
    workers: int = setting(0, Number(int, 0), "Worker processes (0: one per core, 1: in the command's process).")
    seed: int | None = setting(None, ANY_INTEGER, "Seed of the readouts (default: [study] seed).")


@dataclass(frozen=True)
class AnalysisSettings:
    # The building bootstrap behind every confidence interval, and the win rates' smoothing: 0 clips them to
    # [0.001, 0.999] as the paper did, a > 0 is (wins + a) / (n + 2a).
    bootstrap: int = setting(200, Number(int, 0, below=1_000_001), "Bootstrap replicates (0: no intervals).")
    level: float = setting(0.95, Number(float, 0, above=True, below=1), "Confidence level of the intervals.")
    seed: int = setting(0, ANY_INTEGER, "Which buildings each replicate draws.")
    smoothing: float = setting(0.0, Number(float, 0), "0: win rates clipped to [0.001, 0.999]; a > 0: Laplace.")


@dataclass(frozen=True)
class DemoSettings:
    profile: str | None = setting(None, Text(), "The `tdb demo` profile that made the workspace.")


SECTION_TYPES: dict[str, type] = {
    "study": StudySettings,
    "split": SplitSettings,
    "train": TrainSettings,
    "transfer": TransferSettings,
    "analysis": AnalysisSettings,
    "demo": DemoSettings,
}
# Settings of earlier versions, and what replaced them.
RETIRED_SETTINGS = {
    ("transfer", "epochs"): "readouts now train until their held-out loss stops improving: set max_steps (the"
    " step budget) and patience instead",
}


@dataclass(frozen=True)
class Settings:
    """Every section of tdb.toml, defaults filled in."""

    study: StudySettings = field(default_factory=StudySettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)


def rule_of(section: str, key: str) -> Rule:
    """The rule a setting's values obey (for a flag that overrides it)."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(SECTION_TYPES[section])}[key]


def section_problem(section: str, values: Mapping[str, Any]) -> str | None:
    """Why these values of [section] are unusable (a retired or unknown key, a value breaking its rule), or
    None. Checked in the dataclass's field order, so the first bad setting is named."""
    fields = {f.name: f for f in dataclasses.fields(SECTION_TYPES[section])}
    for key in values:
        if (section, key) in RETIRED_SETTINGS:
            return f"[{section}] {key} is no longer a setting: {RETIRED_SETTINGS[section, key]}"
        if key not in fields:
            return f"unknown setting [{section}] {key}; [{section}] has {', '.join(fields)}"
    for key, spec in fields.items():
        if key in values:
            reason = spec.metadata["rule"].check(f"[{section}] {key}", values[key])
            if reason:
                return reason
    return None


def settings_problem(loaded: Mapping[str, Any]) -> str | None:
    """Why a parsed tdb.toml is unusable (an unknown section, a section that is no table, a bad setting)."""
    for section, values in loaded.items():
        if section not in SECTION_TYPES:
            known = ", ".join(f"[{s}]" for s in SECTION_TYPES)
            return f"unknown section [{section}]; the sections are {known}"
        if not isinstance(values, dict):
            return f"top-level key {section!r} must be a table ([{section}])"
        reason = section_problem(section, values)
        if reason:
            return reason
    return None


def parse_settings(loaded: Mapping[str, Mapping[str, Any]]) -> Settings:
    """The typed settings of a parsed tdb.toml; raises ValueError (one line) where it is unusable."""
    reason = settings_problem(loaded)
    if reason:
        raise ValueError(reason)
    return Settings(**{section: SECTION_TYPES[section](**values) for section, values in loaded.items()})


def with_overrides(values: Any, overrides: Mapping[str, Any] | None, section: str) -> Any:
    """A section's settings with the non-None `overrides` (a command's flags, a Python caller's arguments)
    in place; raises ValueError (one line) naming the first that breaks its rule or is no setting."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    reason = section_problem(section, given)
    if reason:
        raise ValueError(reason)
    return dataclasses.replace(values, **given)


def as_dict(values: Any) -> dict[str, Any]:
    """A section's settings as a plain dict (lists copied): for hashing and for the provenance in `runs`."""
    return {f.name: _plain(getattr(values, f.name)) for f in dataclasses.fields(values)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def reference() -> list[dict[str, str]]:
    """Every setting of every section: section, key, default, rule and what it does (for docs/cli.md)."""
    return [
        {
            "section": section,
            "key": spec.name,
            "default": "(none)"
            if spec.default is None and spec.default_factory is dataclasses.MISSING
            else repr(spec.default_factory() if spec.default is dataclasses.MISSING else spec.default),
            "rule": spec.metadata["rule"].describe(),
            "about": spec.metadata["about"],
        }
        for section, kind in SECTION_TYPES.items()
        for spec in dataclasses.fields(kind)
    ]
