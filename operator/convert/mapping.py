"""PURE: the generic mapping of the Serve config onto the API models, key by key, by the models' own fields.

No field list lives here: a key is looked up in the model's `model_fields` and its value validated by the field's
own type, so a field the models gain is converted without a change to the converter.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..compose import validation_message
from .outputs import Output, child


class _Missing:
    """The value of a key that was not mapped (None is a value)."""


MISSING = _Missing()


def _submodel(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model, whether a list of it) a field holds, looking through `X | None`; (None, False) for others."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _submodel(options[0]) if len(options) == 1 else (None, False)
    if origin is list:
        inner, nested_list = _submodel(get_args(annotation)[0])
        return (inner, True) if inner is not None and not nested_list else (None, False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Validates one field's value alone: its type with its constraints (ge, pattern, ...)."""
    info = model.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated.__class_getitem__((annotation, *info.metadata))  # type: ignore[attr-defined]
    return TypeAdapter(annotation)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def errors(error: ValidationError) -> str:
    """pydantic's errors as `field.path: message`, relative to the model that refused."""
    return validation_message(error, root="")


def field_error(model: type[BaseModel], name: str, value: Any) -> str | None:
    """Why the field `name` of `model` refuses `value`, or None when it takes it."""
    try:
        _adapter(model, name).validate_python(value)
    except ValidationError as error:
        return f"{model.__name__}.{name} refuses {_short(value)}: {errors(error)}"
    return None


# Reasons for Serve keys that no model has a field for, where more can be said than "no field". Looked up only
# when the model has no such field, so a field added later wins.
NO_FIELD_REASONS = {
    "host": "serveplane's proxies listen on all of the pod's addresses (0.0.0.0)",
    "target_capacity": "serveplane sets Serve's target_capacity itself while it upgrades a cluster",
    "port": "Serve's per-application port is deprecated; the proxies' ports are spec.serve's",
}


def _no_field(model: type[BaseModel], key: Any) -> str:
    why = NO_FIELD_REASONS.get(str(key))
    return why or f"{model.__name__} has no field {key} (the serveplane API cannot express it yet)"


def map_field(model: type[BaseModel], name: str, value: Any, path: str, out: Output) -> Any:
    """`value` for the field `name` of `model`, nested models mapped key by key; MISSING (and a note on `out`)
    when the model has no such field or the field refuses the value. `path` is where the value is in the input."""
    info = model.model_fields.get(name)
    if info is None:
        out.note(path, _no_field(model, name))
        return MISSING
    raw = value
    nested, is_list = _submodel(info.annotation)
    handled = False
    if nested is not None and not is_list and isinstance(value, dict):
        value, handled = map_onto(nested, value, path, out), True
        if not value and value != raw:
            return MISSING  # every key was refused (and noted): an empty one would mean the defaults, not theirs
    elif nested is not None and is_list and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        value, handled = [map_onto(nested, item, child(path, i), out) for i, item in enumerate(value)], True
    error = field_error(model, name, value)
    if error:
        out.forget(path)
        out.note(path, error)
        return MISSING
    # A nested value records its own leaves; an empty one has none, so it is recorded here.
    if not handled or not value:
        out.map(path)
    return value


def map_onto(
    model: type[BaseModel], data: Mapping[str, Any], path: str, out: Output, skip: Collection[str] = ()
) -> dict[str, Any]:
    """The keys of `data` (snake_case, as Serve writes them) that `model` has a field for, by field name; each
    other key is noted on `out`. `skip`: keys the caller maps itself."""
    mapped: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip:
            continue
        converted = map_field(model, str(key), value, child(path, str(key)), out)
        if converted is not MISSING:
            mapped[str(key)] = converted
    return mapped


def to_wire_keys(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (by field name) with the model's camelCase aliases, nested models too, free-form values untouched:
    the shape of a document the model refuses, printed commented out for a fix by hand."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            out[key] = value
            continue
        nested, is_list = _submodel(info.annotation)
        if nested is not None and isinstance(value, dict) and not is_list:
            value = to_wire_keys(nested, value)
        elif nested is not None and isinstance(value, list) and is_list:
            value = [to_wire_keys(nested, v) if isinstance(v, dict) else v for v in value]
        out[info.alias or key] = value
    return out


def validated(model: type[BaseModel], data: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the camelCase wire form of `data`, None) when `model` takes it, else (its best-effort camelCase, why not).

    Only what was set is emitted: the models' defaults are the operator's business, not the conversion's."""
    try:
        spec = model.model_validate(dict(data))
    except ValidationError as error:
        return to_wire_keys(model, data), errors(error)
    return spec.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json"), None


def dig(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]... through maps and lists, None where the input has no such part (or the wrong shape)."""
    for key in keys:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def front(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """`data` with `keys` first (the models put a deployment's name last), for a reader of the YAML."""
    return {**{k: data[k] for k in keys if k in data}, **{k: v for k, v in data.items() if k not in keys}}
