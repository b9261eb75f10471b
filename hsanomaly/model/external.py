"""What an ONNX file holds that a bundle's checks go by, without the onnx package: whether it
keeps tensors outside itself ("external data"), and the operators its nodes run.

A bundle's checksums cover the files model.json lists. An ONNX file can point at weights in
other files, which onnxruntime then loads from beside it; swapping those would change the
scores with every checksum still matching. The exporter never writes external data, so a
bundle whose networks use it is refused, as is one running an operator the exporter never
writes (``model.bundle.OPERATORS``). This walks the protobuf wire format once (ModelProto ->
graphs, functions, nodes, attributes, sparse tensors -> TensorProto) and looks for a tensor's
``data_location = EXTERNAL`` or ``external_data`` and each node's operator.
"""

from typing import NamedTuple

# message kind -> {field number: kind of the message in that field} (onnx.proto3)
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse",
                  23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1


class MalformedProtobuf(ValueError):
    pass


class Graph(NamedTuple):
    """What one reading of a serialised ModelProto finds."""

    external: bool            # a tensor lives in another file
    operators: frozenset      # {(domain, op_type)} of every node ("" is ONNX's own domain)
    nested: bool              # a node holds a graph (a Loop's, an If's, a Scan's body)


_NODE_OP_TYPE, _NODE_DOMAIN = 4, 7
_SUBGRAPHS = {6, 11}           # an attribute's graph or graphs


def read_graph(data):
    """``Graph`` of the serialised ModelProto ``data`` (bytes): its graphs, functions, nodes,
    attributes and tensors, subgraphs' too, walked once."""
    external, found, nested = [False], set(), [False]

    def walk(buf, kind):
        children = _CHILDREN[kind]
        op_type = domain = ""
        for field, wire, value in _fields(buf):
            if kind == "tensor":
                if (field == _TENSOR_EXTERNAL_DATA and wire == 2) or \
                        (field == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL):
                    external[0] = True
            elif kind == "node" and wire == 2 and field in (_NODE_OP_TYPE, _NODE_DOMAIN):
                text = bytes(value).decode("utf-8", "replace")
                op_type, domain = (text, domain) if field == _NODE_OP_TYPE else (op_type, text)
            elif kind == "attribute" and field in _SUBGRAPHS:
                nested[0] = True
            if field in children and wire == 2:
                walk(value, children[field])
        if kind == "node":
            found.add(("" if domain == "ai.onnx" else domain, op_type))

    walk(memoryview(data), "model")
    return Graph(external[0], frozenset(found), nested[0])



def _fields(buf):
    """(field number, wire type, value) of each field of one message: an int for varints,
    a memoryview for length-delimited fields, None for fixed-width ones."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:                  # protobuf numbers fields from 1 (zeros are no message)
            raise MalformedProtobuf("a field numbered 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise MalformedProtobuf("a field runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
            if pos > end:
                raise MalformedProtobuf("a field runs past the end of its message")
        else:
            raise MalformedProtobuf(f"unsupported wire type {wire}")
        yield field, wire, value


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise MalformedProtobuf("a truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
