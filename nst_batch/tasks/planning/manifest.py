"""The batch manifest (YAML): one pydantic schema, the single source of truth for its shape.

Stylizer parameters are not repeated here: :class:`Params` is generated from the fields of
:class:`nst_batch.core.StyleConfig`, so every stylizer parameter is a manifest parameter, with the
core's defaults.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator
from pydantic_core import ErrorDetails

from nst_batch.core import StyleConfig
from nst_batch.core.config import scales_from
from nst_batch.core.errors import did_you_mean
from nst_batch.tasks.errors import ManifestError, Problem
from nst_batch.tasks.planning.masks import parse_colour
from nst_batch.tasks.planning.runtime import RuntimeOptions


def _params_model() -> type[BaseModel]:
    hints = typing.get_type_hints(StyleConfig)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(StyleConfig):
        fields[f.name] = (
            hints[f.name] | None,
            Field(None, description=f.metadata.get("help")),
        )  # the same help as the CLI's
    model = create_model("Params", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def _runtime_model() -> type[BaseModel]:
    """The manifest's runtime keys, one per :class:`RuntimeOptions` field, with its default, help
    and range: a setting added there is a manifest key (and a CLI flag) at once."""
    hints = typing.get_type_hints(RuntimeOptions)
    keys: dict[str, Any] = {}
    for f in dataclasses.fields(RuntimeOptions):
        meta, kind = f.metadata, hints[f.name]
        if meta["choices"]:
            kind = Literal[meta["choices"]] | None if f.default is None else Literal[meta["choices"]]
        bounds = {k: v for k, v in (("ge", meta["low"]), ("le", meta["high"])) if v is not None}
        keys[f.name] = (kind, Field(f.default, description=meta["help"], strict=kind in (int, bool) or None, **bounds))
    model: type[BaseModel] = create_model("RuntimeKeys", __config__=ConfigDict(extra="forbid"), **keys)
    return model


_Params = _params_model()
_RuntimeKeys = _runtime_model()
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(StyleConfig)}
# Valid or not only together with other fields (and their defaults): checked at expansion.
_CROSS_FIELD = {"style_layer_weights", "style_blend"}
_TUPLE_FIELDS = {
    f.name
    for f in dataclasses.fields(StyleConfig)
    if typing.get_origin(typing.get_type_hints(StyleConfig)[f.name]) is tuple
}


def _takes_numbers(hint: Any) -> bool:
    """Whether a field's type holds int or float and never bool."""
    parts = {hint} | set(typing.get_args(hint)) | {a for arg in typing.get_args(hint) for a in typing.get_args(arg)}
    return bool(parts & {int, float}) and bool not in parts


_NUMBER_FIELDS = {
    f.name for f in dataclasses.fields(StyleConfig) if _takes_numbers(typing.get_type_hints(StyleConfig)[f.name])
}


# A sweep's points per pair at most: 3 x 3 x 3 x 3 is 81; a typo of 1000 values is refused.
MAX_SWEEP_POINTS = 100
# Bounds checked before a manifest is expanded: its size, and its YAML nodes counted with every
# alias expanded (a 594-byte "billion laughs" document ran for 186 s to 3.9 GB). A manifest of
# 10,000 explicit pairs is about 0.6 MB and 70,000 nodes.
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_NODES = 1_000_000
# What a message may quote of a value given in the manifest.
MAX_QUOTED = 200


def excerpt(value: Any) -> str:
    """``repr(value)``, at most :data:`MAX_QUOTED` characters (a message never prints a megabyte)."""
    if isinstance(value, str | bytes) and len(value) > MAX_QUOTED:
        value = value[:MAX_QUOTED]
    elif isinstance(value, list | tuple | dict) and len(value) > 20:
        return f"a {type(value).__name__} of {len(value):,} items"
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."


class Params(_Params):  # type: ignore[misc, valid-type]
    """Any :class:`StyleConfig` field; a scalar is accepted where a list is expected. ``sweep``
    maps fields to lists of values: a pair is run once per combination of them."""

    model_config = ConfigDict(extra="forbid")
    sweep: dict[str, list[Any]] | None = None

    @field_validator("sweep", mode="after")
    @classmethod
    def _sweep_values(cls, sweep: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        """Each swept field is a stylizer parameter and each of its values valid on its own."""
        if sweep is None:
            return None
        for name, values in sweep.items():
            if name not in _CONFIG_FIELDS:
                raise ValueError(f"sweep: unknown parameter {name!r}{did_you_mean(name, sorted(_CONFIG_FIELDS))}")
            if not values:
                raise ValueError(f"sweep: {name} needs at least one value")
            if len(values) > MAX_SWEEP_POINTS:
                raise ValueError(
                    f"sweep: {name} lists {len(values):,} values, over the limit of {MAX_SWEEP_POINTS} points per pair"
                )
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"sweep: {name} lists a value twice")
            sweep[name] = [cls._one_value(name, value) for value in values]
        return sweep

    @classmethod
    def _one_value(cls, name: str, value: Any) -> Any:
        """A swept value, checked and normalised as if it were given on its own (``auto``, a scalar for a list)."""
        try:
            return Params.model_validate({name: value}).model_dump()[name]  # Params: not a pair, which needs a content
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(f"sweep: {message if message.startswith(name) else f'{name}: {message}'}") from None

    @field_validator(*sorted(_NUMBER_FIELDS), mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """``iterations: true`` is a mistake, not 1 iteration (YAML's booleans are ints to pydantic)."""
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, bool) for v in values):
            raise ValueError(f"{info.field_name} takes numbers, got {excerpt(value)}")
        return value

    @field_validator(*sorted(_TUPLE_FIELDS), mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "scales" and isinstance(value, str | int) and not isinstance(value, bool):
            return list(scales_from(value))  # the CLI's grammar: auto, a count, or fractions
        if isinstance(value, str) and "," in value:
            return [part.strip() for part in value.split(",") if part.strip()]  # "150,30": the CLI's form of a list
        return [value] if isinstance(value, int | float | str) else value

    @field_validator(*sorted(_CONFIG_FIELDS - _CROSS_FIELD), mode="after")
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        """Range-check each value on its own, so a bad size is reported together with unknown
        keys and type errors. Checks across fields (blend weights per style, ...) run when the
        pairs are expanded."""
        if value is None:
            return value
        StyleConfig(**{str(info.field_name): value})
        return value

    def given(self) -> dict[str, Any]:
        """The stylizer parameters given here (the sweep apart)."""
        return self.model_dump(exclude_none=True, exclude={"sweep"})


class StyleEntry(Params):
    """A style image, with parameters that apply to every pair using it."""

    path: str


class PairEntry(Params):
    content: str  # a path, glob or s3:// URI, relative to the manifest
    style: str | list[str] = Field(min_length=1)  # style name(s) from `styles`; an empty list is refused
    name: str | None = None  # output name (without extension); default content-stem__style
    # Styles by region: an image (path or URI relative to the manifest; `{stem}` is each photo's
    # file name without extension) whose colours `mask_styles` maps to the pair's styles or `keep`.
    mask: str | None = None
    mask_styles: dict[str, str] | None = None

    @field_validator("mask_styles", mode="after")
    @classmethod
    def _colours(cls, mapping: dict[str, str] | None) -> dict[str, str] | None:
        if mapping is not None:
            if not mapping:
                raise ValueError("mask_styles maps no colour")
            for colour in mapping:
                parse_colour(colour)
        return mapping


class Manifest(_RuntimeKeys):  # type: ignore[misc, valid-type]  # a generated base: how and where to run (RuntimeOptions)
    model_config = ConfigDict(extra="forbid")

    output: str = "./out"
    defaults: Params = Field(default_factory=Params)
    styles: dict[str, str | StyleEntry]
    contents: list[str] = Field(default_factory=list)
    pairs: Literal["all"] | list[PairEntry] = "all"
    format: Literal["png", "jpg", "webp"] = "png"
    # A pair redone because its parameters or inputs changed keeps its previous output and sidecar
    # under earlier/ (named by when they were made); the gallery shows the latest.
    keep_earlier: bool = False

    @field_validator("styles")
    @classmethod
    def _style_names(cls, styles: dict[str, Any]) -> dict[str, Any]:
        if not styles:
            raise ValueError("at least one style is needed")
        for name in styles:
            if not name or "/" in name or name.startswith(".") or len(name) > 64:
                raise ValueError(f"style name {name!r} must be 1-64 characters, without '/' or a leading '.'")
        return styles

    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions.from_values(self)

    def style_path(self, name: str) -> str:
        entry = self.styles[name]
        return entry if isinstance(entry, str) else entry.path

    def style_params(self, name: str) -> dict[str, Any]:
        entry = self.styles[name]
        return {} if isinstance(entry, str) else {k: v for k, v in entry.given().items() if k != "path"}

    def style_sweep(self, name: str) -> dict[str, list[Any]]:
        entry = self.styles[name]
        return {} if isinstance(entry, str) else dict(entry.sweep or {})


def printable(text: str) -> str:
    """``text`` with control characters (an ANSI escape) and undecodable bytes (lone surrogates)
    written as Python escapes: safe on a terminal, in a log and in UTF-8."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class ManifestProblem:
    path: str  # e.g. "styles.scream.style_weight"
    message: str
    line: int | None = None

    def __post_init__(self) -> None:
        # A file name may hold an ANSI escape or bytes that are not UTF-8: shown escaped, never raw.
        object.__setattr__(self, "message", printable(self.message))
        if len(self.message) > 4 * MAX_QUOTED:  # whatever a validator quoted, a message stays a line
            object.__setattr__(self, "message", self.message[: 4 * MAX_QUOTED] + " ...")
        if len(self.path) > MAX_QUOTED:
            object.__setattr__(self, "path", self.path[:MAX_QUOTED] + "...")

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '(top)'}{where}: {self.message}"


_BOOL, _INT, _STR = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:str"
# Fields whose values are names or paths: read as the characters written, whatever they look like
# (a style called `1889` or `no`, a photo called `0040.jpg`).
_NAME_FIELDS = frozenset({"style", "name", "content", "contents", "path", "output", "weights", "device"})


# libyaml's parser where PyYAML has it (10x faster on a manifest of 20,000 explicit pairs); the
# resolver and the constructor below are Python either way.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """SafeLoader that reads values the way a person wrote them and refuses a key given twice in
    one mapping (YAML would keep the last silently).

    PyYAML implements YAML 1.1, where ``no``/``yes``/``on``/``off`` are booleans and ``0040`` is
    octal 32. Here, as in YAML 1.2's core schema, only ``true``/``false`` are booleans and an
    integer is decimal unless it says ``0o`` or ``0x``; mapping keys (parameter and style names)
    and the values of name fields (:data:`_NAME_FIELDS`) are strings as written."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and not key_node.style:  # plain: None (PyYAML) or "" (libyaml)
                key_node.tag = _STR
                if key_node.value in _NAME_FIELDS:
                    _as_written(value_node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _construct(node: yaml.Node | None) -> Any:
    """The Python values of a composed document, by :class:`_StrictLoader`'s rules."""
    if node is None:
        return None
    loader = _StrictLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _as_written(node: yaml.Node) -> None:
    """A plain scalar (or a list of them) as the string it was written as."""
    children = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for child in children:
        if isinstance(child, yaml.ScalarNode) and not child.style and child.tag != "tag:yaml.org,2002:null":
            child.tag = _STR


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = node.value
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    base = 8 if digits.startswith("0o") else 16 if digits.startswith("0x") else 10
    return sign * int(digits[2:] if base != 10 else digits, base)


_StrictLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_StrictLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_StrictLoader.add_constructor(_INT, _yaml12_int)


def _expanded_nodes(node: yaml.Node | None, limit: int) -> int:
    """How many nodes the document has with every alias expanded, counted without expanding
    (an alias is the same node object again), stopping past ``limit``."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a cycle (a recursive alias) counts once here; the loader refuses it later
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        else:
            total = 1
        sizes[id(n)] = min(total, limit + 1)
        return sizes[id(n)]

    return size(node) if node is not None else 0


def parse_manifest_leniently(text: str, source: str) -> tuple[Manifest | None, list[Problem]]:
    """Every problem of the manifest's text and schema, and the manifest without the values that
    have them (so that ``nst validate`` can go on to its globs and files in the same pass); None
    when nothing usable is left (a syntax error, no styles)."""
    try:
        return parse_manifest(text, source), []
    except ManifestError as exc:
        problems = list(exc.problems)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader); parse_manifest bounded it
    except (yaml.YAMLError, ValueError, RecursionError):
        return None, problems
    for _ in range(5):  # each round drops what the last one refused; a few rounds settle any manifest
        if not isinstance(data, dict):
            return None, problems
        try:
            return Manifest.model_validate(data), problems
        except ValidationError as exc:
            for err in sorted(exc.errors(), key=lambda e: [str(p) for p in e["loc"]], reverse=True):
                _drop(data, _clean_loc(err["loc"]))
    return None, problems


def _drop(data: Any, loc: tuple[Any, ...]) -> None:
    """Remove the value at ``loc`` (a key of a mapping, an item of a list) if it is there."""
    for part in loc[:-1]:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return
    if not loc:
        return
    last = loc[-1]
    if isinstance(data, dict):
        data.pop(last, None)
    elif isinstance(data, list) and isinstance(last, int) and last < len(data):
        del data[last]


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse and validate YAML text; raises :class:`ManifestError` listing every problem."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            source,
            [
                ManifestProblem(
                    "",
                    f"the manifest is {len(text):,} characters, over the limit of "
                    f"{MAX_MANIFEST_BYTES:,}: use globs and sweeps rather than listing every pair",
                )
            ],
        )
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        if _expanded_nodes(node, MAX_MANIFEST_NODES) > MAX_MANIFEST_NODES:
            raise ManifestError(
                source,
                [
                    ManifestProblem(
                        "",
                        f"the manifest expands to over {MAX_MANIFEST_NODES:,} YAML values "
                        "(aliases *name repeat what they name): a manifest that large is refused",
                    )
                ],
            )
        data = _construct(node)  # from the nodes composed above: the text is parsed once
    except ValueError as exc:  # an integer of thousands of digits (Python's int() refuses it)
        if isinstance(exc, ManifestError):
            raise
        reason = (
            "a number has more than 4,300 digits" if "digits" in str(exc) else " ".join(str(exc).split())[:MAX_QUOTED]
        )
        raise ManifestError(source, [ManifestProblem("", f"a value cannot be read: {reason}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, [ManifestProblem("", f"YAML syntax error: {reason}", line)]) from None
    except RecursionError:  # "[[[[..." 500 deep: a one-line answer, not a 3,000-line traceback
        raise ManifestError(source, [ManifestProblem("", "the YAML is nested too deeply to be a manifest")]) from None
    if not isinstance(data, dict):
        raise ManifestError(source, [ManifestProblem("", "the manifest must be a YAML mapping (key: value)", 1)])
    problems = _unknown_styles(data, node)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _clean_loc(err["loc"])
            problems.append(ManifestProblem(".".join(map(str, loc)), _message(err, loc), _line_of(node, loc)))
        problems = list(dict.fromkeys(_drop_union_noise(problems)))  # a union's branches can repeat one message
    if problems:
        raise ManifestError(source, sorted(problems, key=lambda p: p.line or 0)) from None  # in file order
    return manifest


def _unknown_styles(data: dict[str, Any], node: yaml.Node | None) -> list[ManifestProblem]:
    """Every pair's unknown style names, all at once, each with the nearest known name."""
    styles, pairs = data.get("styles"), data.get("pairs")
    if not isinstance(styles, dict) or not isinstance(pairs, list):
        return []
    problems = []
    for i, pair in enumerate(pairs):
        wanted = pair.get("style") if isinstance(pair, dict) else None
        names = [wanted] if isinstance(wanted, str) else wanted if isinstance(wanted, list) else []
        for name in names:
            if isinstance(name, str) and name not in styles:
                message = (
                    f"unknown style {name!r}{did_you_mean(name, list(map(str, styles)))}; known: "
                    f"{', '.join(map(str, styles))}"
                )
                problems.append(ManifestProblem(f"pairs.{i}.style", message, _line_of(node, ("pairs", i, "style"))))
    return problems


def _known_keys() -> list[str]:
    return sorted({*Manifest.model_fields, *StyleEntry.model_fields, *PairEntry.model_fields})


def _drop_union_noise(problems: list[ManifestProblem]) -> list[ManifestProblem]:
    """For a value that may be a string or a mapping (a style), pydantic reports both branches;
    keep the specific problems inside the mapping, not "should be a valid string" beside them."""

    def noise(p: ManifestProblem) -> bool:
        generic = p.message in (
            "Input should be a valid string",
            "Input should be 'all'",
            "Input should be a valid list",
        )
        return generic and any(o is not p and (o.path == p.path or o.path.startswith(p.path + ".")) for o in problems)

    return [p for p in problems if not noise(p)] or problems


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch labels (``str``, ``StyleEntry``, ``list[PairEntry]``, ...)."""
    labels = {"str", "int", "float", "StyleEntry", "PairEntry"}
    return tuple(p for p in loc if not (isinstance(p, str) and (p in labels or "[" in p or "(" in p)))


def _message(err: ErrorDetails, loc: tuple[Any, ...]) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key{did_you_mean(str(loc[-1]), _known_keys())}" if loc else "unknown key"
    if err["type"] == "missing":
        return "required"
    if loc == ("pairs",) and err["type"] == "literal_error" and not isinstance(err.get("input"), list):
        return f"pairs must be all (every content x every style) or a list of pairs, got {excerpt(err.get('input'))}"
    return str(err["msg"]).removeprefix("Value error, ")


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            node = match[1]
            line = match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
