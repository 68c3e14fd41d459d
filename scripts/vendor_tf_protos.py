"""Rewrite proto/tensorflow, proto/tensorflow_serving and proto/xla from the installed tensorflow and
tensorflow-serving-api packages (`python scripts/vendor_tf_protos.py`; a development step, run after
moving either package in uv.lock, then `python scripts/gen_protos.py`).

The serving path reads TF Serving requests, saved_model.pb, models.config and warm-up records without
importing TensorFlow, so their protos are vendored. A process may still import the real packages too
(the tensorflow runtime, training, tests), and protobuf's default pool takes a file name twice only when
both descriptors are byte-identical. So each .proto is printed from the descriptor the installed package
registers: compiled again by protoc it gives back exactly those bytes (tests/service/grpc/
test_vendored_protos.py checks it). Comments of the originals are not in descriptors and are lost.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
TOP_DIRS = ("tensorflow", "tensorflow_serving", "xla")

# What the serving path uses; everything they import comes along
ROOT_MODULES = (
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.model_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.prediction_log_pb2",
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.protobuf.saved_model_pb2",
)

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {number: name[5:].lower() for name, number in FDP.Type.items()
            if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")}


def installed_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Every file the root modules need, by proto file name, but protobuf's own."""
    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def walk(fd: FileDescriptor) -> None:
        if fd.name in found or fd.name.startswith("google/protobuf/"):
            return
        found[fd.name] = descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb)
        for dep in fd.dependencies:
            walk(dep)

    for module in ROOT_MODULES:
        walk(importlib.import_module(module).DESCRIPTOR)
    return found


def _literal(value: object, field: object = None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    enum_type = getattr(field, "enum_type", None)
    if enum_type is not None and isinstance(value, int):
        return enum_type.values_by_number[value].name
    return str(value)


def _options(options: object) -> list[str]:
    """`name = value` for each option set, in field-number order as protobuf serializes them."""
    out = []
    for field, value in options.ListFields():  # type: ignore[attr-defined]
        if field.is_extension:
            raise SystemExit(f"custom option {field.full_name} is not supported")
        out.append(f"{field.name} = {_literal(value, field)}")
    return out


def _field_type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        return field.type_name
    return _SCALARS[field.type]


def _field(field: descriptor_pb2.FieldDescriptorProto, syntax: str, maps: dict[str, descriptor_pb2.DescriptorProto],
           in_oneof: bool) -> str:
    entry = maps.get(field.type_name) if field.type == FDP.TYPE_MESSAGE else None
    if entry is not None:
        key, value = entry.field
        kind = f"map<{_field_type(key)}, {_field_type(value)}>"
    else:
        kind = _field_type(field)
        if field.label == FDP.LABEL_REPEATED:
            kind = "repeated " + kind
        elif field.proto3_optional:
            kind = "optional " + kind
        elif syntax == "proto2" and not in_oneof:
            kind = ("required " if field.label == FDP.LABEL_REQUIRED else "optional ") + kind
    extras = []
    if field.HasField("default_value"):
        default = field.default_value
        quoted = field.type in (FDP.TYPE_STRING, FDP.TYPE_BYTES)
        extras.append(f"default = {_literal(default) if quoted else default}")
    if field.HasField("json_name"):
        extras.append(f"json_name = {_literal(field.json_name)}")
    extras += _options(field.options)
    suffix = f" [{', '.join(extras)}]" if extras else ""
    return f"{kind} {field.name} = {field.number}{suffix};"


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> Iterator[str]:
    yield f"{indent}enum {enum.name} {{"
    for option in _options(enum.options):
        yield f"{indent}  option {option};"
    for value in enum.value:
        extras = _options(value.options)
        yield f"{indent}  {value.name} = {value.number}{f' [{chr(44).join(extras)}]' if extras else ''};"
    for r in enum.reserved_range:  # inclusive end
        yield f"{indent}  reserved {r.start if r.start == r.end else f'{r.start} to {r.end}'};"
    for name in enum.reserved_name:
        yield f"{indent}  reserved {_literal(name)};"
    yield f"{indent}}}"


def _message(msg: descriptor_pb2.DescriptorProto, scope: str, syntax: str, indent: str) -> Iterator[str]:
    if msg.extension_range or msg.extension:
        raise SystemExit(f"{scope}.{msg.name}: extensions are not supported")
    full = f"{scope}.{msg.name}"
    yield f"{indent}message {msg.name} {{"
    inner = indent + "  "
    for option in _options(msg.options):
        yield f"{inner}option {option};"
    for enum in msg.enum_type:
        yield from _enum(enum, inner)
    maps = {f"{full}.{n.name}": n for n in msg.nested_type if n.options.map_entry}
    # nested messages and map fields (whose entry protoc adds to nested_type where the field stands) are
    # interleaved so that both the field order and the nested_type order come out as they were
    nested = list(msg.nested_type)
    done = 0
    i = 0
    while i < len(msg.field):
        field = msg.field[i]
        if field.type_name in maps:
            at = next(k for k, n in enumerate(nested) if f"{full}.{n.name}" == field.type_name)
            for n in nested[done:at]:
                yield from _message(n, full, syntax, inner)
            done = at + 1
        if field.HasField("oneof_index") and not field.proto3_optional:
            index = field.oneof_index
            yield f"{inner}oneof {msg.oneof_decl[index].name} {{"
            for option in _options(msg.oneof_decl[index].options):
                yield f"{inner}  option {option};"
            while i < len(msg.field) and msg.field[i].HasField("oneof_index") and \
                    msg.field[i].oneof_index == index and not msg.field[i].proto3_optional:
                yield f"{inner}  {_field(msg.field[i], syntax, maps, True)}"
                i += 1
            yield f"{inner}}}"
            continue
        yield f"{inner}{_field(field, syntax, maps, False)}"
        i += 1
    for n in nested[done:]:
        if n.options.map_entry:
            raise SystemExit(f"{full}.{n.name}: a map entry out of its field's order")
        yield from _message(n, full, syntax, inner)
    for r in msg.reserved_range:  # exclusive end
        yield f"{inner}reserved {r.start if r.end == r.start + 1 else f'{r.start} to {r.end - 1}'};"
    for name in msg.reserved_name:
        yield f"{inner}reserved {_literal(name)};"
    yield f"{indent}}}"


def to_proto_text(fdp: descriptor_pb2.FileDescriptorProto, origin: str) -> str:
    """.proto source that protoc compiles to `fdp` again (comments aside)."""
    syntax = fdp.syntax or "proto2"
    if syntax not in ("proto2", "proto3") or fdp.extension:
        raise SystemExit(f"{fdp.name}: syntax {syntax!r} or extensions are not supported")
    lines = [f"// {fdp.name} as {origin} registers it, printed from its descriptor by",
             "// scripts/vendor_tf_protos.py (comments of the original are not kept). Apache-2.0: see LICENSE",
             "// and NOTICE in this folder's top directory.", "",
             f'syntax = "{syntax}";', ""]
    if fdp.package:
        lines += [f"package {fdp.package};", ""]
    for k, dep in enumerate(fdp.dependency):
        public = " public" if k in fdp.public_dependency else ""
        weak = " weak" if k in fdp.weak_dependency else ""
        lines.append(f'import{public}{weak} "{dep}";')
    lines += [""] + [f"option {option};" for option in _options(fdp.options)] + [""]
    scope = f".{fdp.package}" if fdp.package else ""
    for enum in fdp.enum_type:
        lines += [*_enum(enum, ""), ""]
    for msg in fdp.message_type:
        lines += [*_message(msg, scope, syntax, ""), ""]
    for service in fdp.service:
        lines.append(f"service {service.name} {{")
        lines += [f"  option {option};" for option in _options(service.options)]
        for m in service.method:
            extras = _options(m.options)
            body = " {\n" + "".join(f"    option {o};\n" for o in extras) + "  }" if extras else ";"
            lines.append(f"  rpc {m.name}({'stream ' if m.client_streaming else ''}{m.input_type}) returns "
                         f"({'stream ' if m.server_streaming else ''}{m.output_type}){body}")
        lines += ["}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def origin_of(name: str) -> str:
    dist = "tensorflow-serving-api" if name.startswith("tensorflow_serving/") else "tensorflow"
    return f"{dist} {importlib.metadata.version(dist)}"


def main() -> int:
    files = installed_files()
    for top in TOP_DIRS:
        for old in (PROTO_DIR / top).rglob("*.proto"):
            old.unlink()
    for name, fdp in sorted(files.items()):
        if name.split("/")[0] not in TOP_DIRS:
            raise SystemExit(f"{name} is outside {TOP_DIRS}")
        target = PROTO_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(to_proto_text(fdp, origin_of(name)))
    print(f"wrote {len(files)} files under {PROTO_DIR}; now run python scripts/gen_protos.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
