"""`tf.train.SequenceExample` as protobuf classes that do not import TensorFlow.

The records job's Beam workers only need to serialize records. Importing
`tensorflow.core.example.example_pb2` imports all of TensorFlow (seconds of CPU
and hundreds of MB per worker process), so this module builds the same messages
(tensorflow/core/example/feature.proto and example.proto: field numbers, types,
packing and the `kind` oneof) from a descriptor in a private pool. The wire
format is TensorFlow's: tests check that records encoded here are byte-for-byte
those encoded with TensorFlow's classes, and that `tf.io` parses them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow"
_Field = descriptor_pb2.FieldDescriptorProto


def _add_message(proto: descriptor_pb2.FileDescriptorProto, name: str,
                 fields: tuple) -> descriptor_pb2.DescriptorProto:
    """Adds message `name` with (field name, number, type, repeated, message type, packed) fields."""
    message = proto.message_type.add(name=name)
    for field_name, number, field_type, repeated, type_name, packed in fields:
        field = message.field.add(
            name=field_name, number=number, type=field_type,
            label=_Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL)
        if type_name:
            field.type_name = f".{_PACKAGE}.{type_name}"
        if packed:
            field.options.packed = True
    return message


def _add_map(proto: descriptor_pb2.FileDescriptorProto, name: str, field_name: str,
             entry_name: str, value_type: str) -> None:
    """Adds message `name` with one field `map<string, value_type> field_name = 1`."""
    message = _add_message(proto, name, ())
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_Field.TYPE_STRING, label=_Field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_Field.TYPE_MESSAGE,
                    label=_Field.LABEL_OPTIONAL, type_name=f".{_PACKAGE}.{value_type}")
    message.field.add(
        name=field_name, number=1, type=_Field.TYPE_MESSAGE, label=_Field.LABEL_REPEATED,
        type_name=f".{_PACKAGE}.{name}.{entry_name}")


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="playclips/tensorflow_example.proto", package=_PACKAGE, syntax="proto3")
    message = _Field.TYPE_MESSAGE
    _add_message(proto, "BytesList", (("value", 1, _Field.TYPE_BYTES, True, "", False),))
    _add_message(proto, "FloatList", (("value", 1, _Field.TYPE_FLOAT, True, "", True),))
    _add_message(proto, "Int64List", (("value", 1, _Field.TYPE_INT64, True, "", True),))
    feature = _add_message(proto, "Feature", (("bytes_list", 1, message, False, "BytesList", False),
                                              ("float_list", 2, message, False, "FloatList", False),
                                              ("int64_list", 3, message, False, "Int64List", False)))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    _add_map(proto, "Features", "feature", "FeatureEntry", "Feature")
    _add_message(proto, "FeatureList", (("feature", 1, message, True, "Feature", False),))
    _add_map(proto, "FeatureLists", "feature_list", "FeatureListEntry", "FeatureList")
    _add_message(proto, "SequenceExample", (("context", 1, message, False, "Features", False),
                                            ("feature_lists", 2, message, False, "FeatureLists", False)))
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())

SequenceExample = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.SequenceExample"))
