"""The bundle manifest: typed, versioned, shared by the host writer and the device reader.

Pure data: no file or clock access here, so host and device parse the same bytes the
same way and the parser can be fuzzed directly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from device_agent.errors import BundleError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMPRESSED_SUFFIXES = (".zst", ".z", ".deflate", ".xz")


class ModelFormat(str, Enum):
    """The file format of a model member; each runtime backend serves one format."""

    TFLITE = "tflite"
    ONNX = "onnx"


# The runtime a model file of each format needs, as the manifest names it per file, and
# the install extra of the distribution that brings it.
RUNTIME_FOR_FORMAT = {ModelFormat.TFLITE: "litert", ModelFormat.ONNX: "onnxruntime"}
EXTRA_FOR_FORMAT = {ModelFormat.TFLITE: "agent-tflite", ModelFormat.ONNX: "agent-onnx"}


class Compression(str, Enum):
    """How a member is stored in the archive (the reader handles every value)."""

    NONE = "none"
    ZSTD = "zstd"  # readable only where the ``zstandard`` package is installed
    DEFLATE = "deflate"
    XZ = "xz"  # LZMA (the standard library's ``lzma``)


class OutputKind(str, Enum):
    """What a model's outputs mean, so the agent reads them right (never arg-maxes a
    detector's boxes): class scores, tensors as they come, values, or detections."""

    CLASSIFIER = "classifier"
    RAW = "raw"
    REGRESSION = "regression"
    DETECTION = "detection"


@dataclass(frozen=True)
class DetectionSpec:
    """Which outputs of a detector hold what, and which detections to keep.

    ``boxes`` names an output of shape ``[1, N, 4]`` (or ``[N, 4]``); ``scores`` one of
    ``[1, N]`` (one class) or ``[1, N, C]`` (per class: the best class wins); ``classes``
    an optional ``[1, N]`` output of class ids. Detections under ``score_threshold`` are
    dropped; with ``nms_iou`` overlapping boxes of one class are suppressed.
    """

    boxes: str
    scores: str
    classes: str | None = None
    score_threshold: float = 0.5
    nms_iou: float | None = None
    max_detections: int = 100

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectionSpec:
        """Parse the manifest's ``detection`` object."""
        return cls(
            boxes=str(d["boxes"]),
            scores=str(d["scores"]),
            classes=_opt_str(d.get("classes"), "detection.classes"),
            score_threshold=float(d.get("score_threshold", 0.5)),
            nms_iou=None if d.get("nms_iou") is None else float(d["nms_iou"]),
            max_detections=int(d.get("max_detections", 100)),
        )

    def validate(self, outputs: tuple[TensorSpec, ...]) -> None:
        """Raise :class:`BundleError` unless the fields are consistent."""
        names = {o.name for o in outputs}
        for role in ("boxes", "scores", "classes"):
            name = getattr(self, role)
            if name is not None and outputs and name not in names:
                raise BundleError(
                    f"manifest.json: detection.{role} names output {name!r}; the model's outputs "
                    f"are {sorted(names)}"
                )
        if not 0.0 <= self.score_threshold <= 1.0:
            raise BundleError(f"manifest.json: detection.score_threshold {self.score_threshold} not in [0, 1]")
        if self.nms_iou is not None and not 0.0 < self.nms_iou <= 1.0:
            raise BundleError(f"manifest.json: detection.nms_iou {self.nms_iou} not in (0, 1]")
        if self.max_detections < 1:
            raise BundleError("manifest.json: detection.max_detections must be at least 1")


@dataclass(frozen=True)
class InputConstant:
    """An input the manifest fixes (a sample rate, a flag): fed as declared on every call."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputConstant:
        """Parse one ``constants`` entry."""
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            shape=tuple(int(s) for s in d.get("shape", [])),
            values=tuple(float(v) for v in d["values"]),
        )


@dataclass(frozen=True)
class CarriedState:
    """An output fed back as an input on the next reading of the same stream (a recurrent
    model's state): ``initial`` fills the input at a stream's start and after a reset;
    ``reset_after_s`` resets a stream that was silent that long."""

    output: str
    input: str
    initial: float = 0.0
    reset_after_s: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CarriedState:
        """Parse one ``state`` entry."""
        return cls(
            output=str(d["output"]),
            input=str(d["input"]),
            initial=float(d.get("initial", 0.0)),
            reset_after_s=None if d.get("reset_after_s") is None else float(d["reset_after_s"]),
        )


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` uses -1 for a dynamic dimension.

    ``scale`` and ``zero_point`` are set for quantized (int8/uint8) tensors, so the
    agent can quantize inputs and dequantize outputs itself.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        """Whether the tensor is int8/uint8 with a scale and zero point."""
        return self.scale is not None and self.scale > 0 and self.dtype in ("int8", "uint8")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        """Parse one input or output spec."""
        return cls(
            name=str(d["name"]),
            shape=tuple(int(s) for s in d["shape"]),
            dtype=str(d["dtype"]),
            scale=None if d.get("scale") is None else float(d["scale"]),
            zero_point=None if d.get("zero_point") is None else int(d["zero_point"]),
        )


@dataclass(frozen=True)
class ModelFile:
    """A model member of the bundle.

    ``sha256`` and ``size`` describe the bytes stored in the archive; when the member
    is compressed, ``raw_sha256`` and ``raw_size`` describe the decompressed model.
    """

    path: str
    sha256: str
    size: int
    format: ModelFormat
    stage: int = 0
    compression: Compression = Compression.NONE
    raw_sha256: str | None = None
    raw_size: int | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    runtime: str | None = None  # the runtime this file needs; None in bundles older than the field

    @property
    def needs_runtime(self) -> str:
        """The runtime this file needs (named in the manifest, else implied by its format)."""
        return self.runtime or RUNTIME_FOR_FORMAT[self.format]

    @property
    def unpacked_path(self) -> str:
        """Where the (decompressed) model lives once unpacked: the suffix names its format."""
        for suffix in _COMPRESSED_SUFFIXES:
            if self.compression != Compression.NONE and self.path.endswith(suffix):
                return self.path[: -len(suffix)]
        return self.path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelFile:
        """Parse one ``files`` entry."""
        return cls(
            path=str(d["path"]),
            sha256=str(d["sha256"]),
            size=int(d["size"]),
            format=ModelFormat(d["format"]),
            stage=int(d.get("stage", 0)),
            compression=Compression(d.get("compression", "none")),
            raw_sha256=_opt_str(d.get("raw_sha256"), "raw_sha256"),
            raw_size=None if d.get("raw_size") is None else int(d["raw_size"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])),
            runtime=_opt_str(d.get("runtime"), "runtime"),
        )


@dataclass(frozen=True)
class ExitStage:
    """One stage of an early-exit cascade: stop here when the exit is confident enough."""

    index: int
    threshold: float
    criterion: str = "max_prob"  # "max_prob" or "entropy"
    macs: int = 0
    expected_exit_rate: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExitStage:
        """Parse one early-exit stage."""
        return cls(
            index=int(d["index"]),
            threshold=float(d["threshold"]),
            criterion=str(d.get("criterion", "max_prob")),
            macs=int(d.get("macs", 0)),
            expected_exit_rate=float(d.get("expected_exit_rate", 0.0)),
        )


@dataclass(frozen=True)
class Manifest:
    """Everything a device needs to know about a bundle before it uses any file."""

    name: str
    version: str
    created: str
    files: tuple[ModelFile, ...]
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    preprocessing: tuple[dict[str, Any], ...] = ()
    labels: tuple[str, ...] = ()
    exits: tuple[ExitStage, ...] = ()
    optimization: dict[str, Any] = field(default_factory=dict)
    device_types: tuple[str, ...] = ()
    min_agent_version: str = "0.1.0"
    validation: str | None = None
    # The validation member is hashed like the model files: every member is checked.
    validation_sha256: str | None = None
    validation_size: int | None = None
    output_kind: OutputKind = OutputKind.CLASSIFIER
    detection: DetectionSpec | None = None
    constants: tuple[InputConstant, ...] = ()
    state: tuple[CarriedState, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def targets(self) -> tuple[ModelFormat, ...]:
        """The model formats the bundle carries."""
        seen: list[ModelFormat] = []
        for f in self.files:
            if f.format not in seen:
                seen.append(f.format)
        return tuple(seen)

    def stage_files(self, fmt: ModelFormat) -> list[ModelFile]:
        """The model files of one format, ordered by cascade stage."""
        return sorted((f for f in self.files if f.format == fmt), key=lambda f: f.stage)

    def to_json(self) -> bytes:
        """Canonical bytes: these exact bytes are hashed and signed."""
        d = asdict(self)
        d["targets"] = [t.value for t in self.targets]
        return json.dumps(d, sort_keys=True, separators=(",", ":"), default=_enum_value).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and validate manifest bytes; any defect raises :class:`BundleError`."""
        try:
            d = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"manifest.json is not valid JSON: {e}") from e
        if not isinstance(d, dict):
            raise BundleError("manifest.json: expected a JSON object at the top level")
        try:
            m = cls._from_dict(d)
            # validate() sees values of any JSON type a hostile manifest can hold.
            m.validate()
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
            raise BundleError(f"manifest.json: missing or invalid field ({e!r})"[:300]) from e
        return m

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Manifest:
        fv = d.get("format_version")
        if fv != FORMAT_VERSION:
            raise BundleError(
                f"manifest.json: format_version {fv!r} is not supported (expected {FORMAT_VERSION})"
            )
        return cls(
            name=str(d["name"]),
            version=str(d["version"]),
            created=str(d["created"]),
            files=tuple(ModelFile.from_dict(f) for f in d["files"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])),
            preprocessing=tuple(dict(s) for s in d.get("preprocessing", [])),
            labels=tuple(str(x) for x in d.get("labels", [])),
            exits=tuple(ExitStage.from_dict(e) for e in d.get("exits", [])),
            optimization=dict(d.get("optimization", {})),
            device_types=tuple(str(x) for x in d.get("device_types", [])),
            min_agent_version=str(d.get("min_agent_version", "0.1.0")),
            validation=None if d.get("validation") is None else str(d["validation"]),
            validation_sha256=None if d.get("validation_sha256") is None else str(d["validation_sha256"]),
            validation_size=None if d.get("validation_size") is None else int(d["validation_size"]),
            output_kind=OutputKind(d.get("output_kind", "classifier")),
            detection=None if d.get("detection") is None else DetectionSpec.from_dict(d["detection"]),
            constants=tuple(InputConstant.from_dict(c) for c in d.get("constants", [])),
            state=tuple(CarriedState.from_dict(c) for c in d.get("state", [])),
        )

    def validate(self) -> None:
        """Check the invariants the reader relies on."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", self.name):
            raise BundleError(f"manifest.json: name {self.name!r} must match [A-Za-z0-9_.-]{{1,128}}")
        parse_semver(self.version, what="version")
        parse_semver(self.min_agent_version, what="min_agent_version")
        if not self.files:
            raise BundleError("manifest.json: 'files' is empty; a bundle needs a model file")
        paths = [f.path for f in self.files]
        if self.validation is not None:
            paths.append(self.validation)
        for p in paths:
            check_member_path(p)
        if len(set(paths)) != len(paths):
            raise BundleError("manifest.json: a file path is listed twice")
        unpacked = [f.unpacked_path for f in self.files] + paths[len(self.files):]
        if len(set(unpacked)) != len(unpacked):
            raise BundleError("manifest.json: two members unpack to the same path")
        for f in self.files:
            if not _SHA256.match(f.sha256):
                raise BundleError(f"manifest.json: sha256 of {f.path} is not 64 hex digits")
            if f.size < 0 or (f.raw_size is not None and f.raw_size < 0):
                raise BundleError(f"manifest.json: negative size for {f.path}")
            if f.compression != Compression.NONE and (f.raw_sha256 is None or f.raw_size is None):
                raise BundleError(f"manifest.json: compressed {f.path} lacks raw_sha256/raw_size")
            if f.raw_sha256 is not None and not _SHA256.match(f.raw_sha256):
                raise BundleError(f"manifest.json: raw_sha256 of {f.path} is not 64 hex digits")
        if self.validation is not None and (
            self.validation_sha256 is None
            or not _SHA256.match(self.validation_sha256)
            or self.validation_size is None
            or self.validation_size < 0
        ):
            raise BundleError(
                f"manifest.json: validation member {self.validation} needs validation_sha256 "
                "(64 hex digits) and a non-negative validation_size"
            )
        self._validate_outputs()
        for e in self.exits:
            if not 0.0 <= e.threshold <= 1.0:
                raise BundleError(f"manifest.json: exit {e.index} threshold {e.threshold} not in [0, 1]")

    def _validate_outputs(self) -> None:
        if (self.output_kind == OutputKind.DETECTION) != (self.detection is not None):
            raise BundleError(
                "manifest.json: output_kind 'detection' and a 'detection' entry go together "
                f"(output_kind is {self.output_kind.value!r})"
            )
        if self.detection is not None:
            self.detection.validate(self.outputs)
        if self.exits and self.output_kind != OutputKind.CLASSIFIER:
            raise BundleError("manifest.json: early exits need output_kind 'classifier'")
        names = {i.name for i in self.inputs}
        outs = {o.name for o in self.outputs}
        for st in self.state:
            if (self.inputs and st.input not in names) or (self.outputs and st.output not in outs):
                raise BundleError(
                    f"manifest.json: state {st.output} -> {st.input} names no such output or input "
                    f"(outputs {sorted(outs)}, inputs {sorted(names)})"
                )
            if st.reset_after_s is not None and st.reset_after_s <= 0:
                raise BundleError(f"manifest.json: state {st.input}: reset_after_s must be positive")
        for c in self.constants:
            if self.inputs and c.name not in names:
                raise BundleError(f"manifest.json: constant {c.name!r} is not an input of the model")
            if int(math.prod(c.shape)) != len(c.values):
                raise BundleError(
                    f"manifest.json: constant {c.name!r} has {len(c.values)} values for shape {c.shape}"
                )


def _opt_str(v: object, what: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise BundleError(f"manifest.json: {what} must be a string, found {type(v).__name__}")
    return v


def _enum_value(o: object) -> object:
    if isinstance(o, Enum):
        return o.value
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def parse_semver(v: str, *, what: str = "version") -> tuple[int, int, int]:
    """``"1.2.3"`` → ``(1, 2, 3)``; anything else is a :class:`BundleError`."""
    m = _SEMVER.match(v)
    if not m:
        raise BundleError(f"manifest.json: {what} {v!r} is not a semantic version like 1.2.3")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def check_member_path(p: str) -> None:
    """Refuse absolute paths, ``..`` and anything but plain relative names."""
    if not isinstance(p, str) or not _SAFE_PATH.match(p) or len(p) > 255:
        raise BundleError(f"bundle member path {p!r} is not a plain relative path")
    if any(part in ("", ".", "..") for part in p.split("/")):
        raise BundleError(f"bundle member path {p!r} contains '.' or '..'")
