"""Graph rewrite: work for an expert that no row of the batch has is (almost) not done.

The exported contract-v2 graph (:mod:`app.training.fusion_v2`) runs the text encoder on every row and the
face and scene networks on their present rows **plus one padding row** (``run_present``: the rows gathered
by ``index_select`` on ``cat([nonzero(present), [0]])``, so the batch is never empty: ONNX Runtime's
convolution kernels fail on a zero-row batch). A text-only request therefore paid for a MobileNetV2 pass
on a 224 px image and ten face-network views, an image-only request for the text encoder on one [PAD]
token, and a request with an image for one more scene and face row than it had. Measured on the shipped
model before the rewrite, one thread, batch 1 (ONNX Runtime profiling per node scope): text-only 17.2 ms
text + 9.2 ms scene + 5.3 ms face; scene + face present 18.6 ms scene + 10.9 ms face + 8.8 ms text.

:func:`skip_absent_experts` rewrites the graph with three ``If`` nodes, leaving every network in the main
graph (ONNX Runtime pre-packs weights and applies its NCHWc convolution layout only to a graph's own
constants: measured, a scene-only batch took 17.0 instead of 9.2 ms with the scene network inside an ``If``
branch):

* **face, scene** (gathered): the branch's input is ``If(count > 0, Gather(rows, present rows),
  PADDING_INPUTS[scope])``, i.e. exactly the present rows, or, when no row has the expert, one small zero
  input; behind the network one zero row is appended, which absent rows read where they read the padding
  row's output before (the fusion puts the prior in their place, so it never reaches an output);
* **text**: ``If(any row's text present, text encoder, zeros [B, 3])`` (the encoder has no convolutions,
  and runs as fast inside the branch).

The outputs do not change (``tests/training/test_skip_absent.py`` compares the graphs before and after on
every combination of present experts, batches of one and three rows).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Name scopes of the branches the torch exporter writes (``/<module attribute>/...``): the v2 model's
#: ``text``, ``face`` and ``scene`` submodules. The audio CNN (scope ``/net/``) costs 0.4 ms on its dummy
#: frame and is left as it is.
GATHERED_BRANCHES: tuple[str, ...] = ("face", "scene")
TEXT_BRANCH = "text"
#: What a gathered branch runs on when no row of the batch has its expert (its output is then read by no
#: row): a small zero input of the branch's dtype, instead of a full-size padding row. ``scene``: uint8
#: [1, 32, 32, 3] (MobileNetV2 pools globally, any side ≥ 32 px works); ``face``: float32 [1, 1, 16, 16]
#: (the face network pools globally too, and its ten views run on 16 px: checked by the tests, which feed
#: batches without a face).
PADDING_INPUTS: dict[str, tuple[int, tuple[int, ...]]] = {
    "scene": (TensorProto.UINT8, (1, 32, 32, 3)),
    "face": (TensorProto.FLOAT, (1, 1, 16, 16)),
}
#: Column of the text expert in the present mask (contract v2 expert order: text, face, scene, audio).
TEXT_COLUMN = 0


def _consumers(nodes: Iterable[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            out.setdefault(name, []).append(n)
    return out


def _branch(
    nodes: Sequence[onnx.NodeProto], scope: str, graph_outputs: set[str]
) -> tuple[list[onnx.NodeProto], set[str], str]:
    """The nodes of scope ``/scope/``, the values they read from outside, and their one output read outside.

    Raises:
        ValueError: no such scope, or its nodes have other than one output read outside the scope.
    """
    prefix = f"/{scope}/"
    inside = [n for n in nodes if n.name.startswith(prefix)]
    if not inside:
        raise ValueError(f"no nodes in scope {prefix!r}")
    produced = {o for n in inside for o in n.output}
    consumers = _consumers(nodes)
    leaving = [
        o
        for o in sorted(produced)
        if o in graph_outputs or any(not c.name.startswith(prefix) for c in consumers.get(o, []))
    ]
    if len(leaving) != 1:
        raise ValueError(
            f"scope {prefix!r} has {len(leaving)} outputs read outside it, expected 1: {leaving}"
        )
    reads = {i for n in inside for i in n.input if i and i not in produced}
    return inside, reads, leaving[0]


def _zeros(name: str) -> onnx.NodeProto:
    """A Constant float32 [1, 3] of zeros: the row absent experts' gathers read."""
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.zeros((1, 3), np.float32), name + "_value")
    )


def _float_output(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _skip_gathered(g: onnx.GraphProto, scope: str) -> None:
    nodes = list(g.node)
    producer = {o: n for n in nodes for o in n.output}
    inside, reads, out = _branch(nodes, scope, {o.name for o in g.output})
    consumers = _consumers(nodes)
    # The row gather in front of the branch: Gather(data, Concat(present rows, [0])).
    gathers = [producer[r] for r in reads if r in producer and producer[r].op_type == "Gather"]
    if len(gathers) != 1:
        raise ValueError(
            f"scope {scope!r}: expected one Gather of present rows in front, found {len(gathers)}"
        )
    g_in = gathers[0]
    concat = producer.get(g_in.input[1])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        raise ValueError(f"scope {scope!r}: the row indices are not Concat(present rows, padding row)")
    # The gather behind it: Gather(branch output, Where(present, cumsum - 1, count)).
    (g_out,) = consumers[out]
    where = producer.get(g_out.input[1])
    if g_out.op_type != "Gather" or where is None or where.op_type != "Where":
        raise ValueError(f"scope {scope!r}: its output is not read by Gather(..., Where(...))")
    count = where.input[2]
    s = f"/{scope}/skip/"
    data_type, padding_shape = PADDING_INPUTS[scope]
    rows, cond, zero = s + "rows", s + "any_present", s + "zero"
    then_out, else_out = s + "present_rows", s + "padding_row"
    then_graph = helper.make_graph(
        [helper.make_node("Gather", [g_in.input[0], concat.input[0]], [then_out], axis=0, name=then_out)],
        f"{scope}_present_rows",
        [],
        [helper.make_tensor_value_info(then_out, data_type, None)],
    )
    padding = numpy_helper.from_array(
        np.zeros(padding_shape, helper.tensor_dtype_to_np_dtype(data_type)), else_out + "_value"
    )
    else_graph = helper.make_graph(
        [helper.make_node("Constant", [], [else_out], value=padding, name=else_out)],
        f"{scope}_padding_row",
        [],
        [helper.make_tensor_value_info(else_out, data_type, None)],
    )
    pick = [
        helper.make_node(
            "Constant", [], [zero], value=numpy_helper.from_array(np.array(0, np.int64), zero + "_value")
        ),
        helper.make_node("Greater", [count, zero], [cond], name=cond),
        helper.make_node("If", [cond], [rows], then_branch=then_graph, else_branch=else_graph, name=s + "If"),
    ]
    for n in inside:
        for k, name in enumerate(n.input):
            if name == g_in.output[0]:
                n.input[k] = rows
    zero_row, padded = s + "zero_row", s + "padded"
    behind = [_zeros(zero_row), helper.make_node("Concat", [out, zero_row], [padded], axis=0, name=padded)]
    g_out.input[0] = padded
    _write_sorted(g, [n for n in nodes if n is not g_in] + pick + behind)


def _skip_text(g: onnx.GraphProto, present: str) -> None:
    nodes = list(g.node)
    inside, _, out = _branch(nodes, TEXT_BRANCH, {o.name for o in g.output})
    consumers = _consumers(nodes)
    body = []
    for n in inside:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        body.append(copy)
    then_out = f"/{TEXT_BRANCH}/skip/then_logits"
    body.append(helper.make_node("Identity", [out], [then_out], name=then_out))
    then_graph = helper.make_graph(body, "text_present", [], [_float_output(then_out)])
    s = f"/{TEXT_BRANCH}/skip/"
    shape, rows, width, size, else_out = (s + n for n in ("shape", "rows", "width", "size", "else_logits"))
    else_nodes = [
        helper.make_node("Shape", [present], [shape], name=shape),
        helper.make_node(
            "Constant", [], [s + "first"], value=numpy_helper.from_array(np.array([0], np.int64))
        ),
        helper.make_node("Gather", [shape, s + "first"], [rows], axis=0, name=rows),
        helper.make_node("Constant", [], [width], value=numpy_helper.from_array(np.array([3], np.int64))),
        helper.make_node("Concat", [rows, width], [size], axis=0, name=size),
        helper.make_node(
            "ConstantOfShape", [size], [else_out], value=numpy_helper.from_array(np.zeros(1, np.float32))
        ),
    ]
    else_graph = helper.make_graph(else_nodes, "text_absent", [], [_float_output(else_out)])
    column, as_int, any_int, any_present, result = (
        s + n for n in ("column", "column_int", "any_int", "any_present", "logits")
    )
    new = [
        helper.make_node(
            "Constant",
            [],
            [s + "text_column"],
            value=numpy_helper.from_array(np.array(TEXT_COLUMN, np.int64)),
        ),
        helper.make_node("Gather", [present, s + "text_column"], [column], axis=1, name=column),
        helper.make_node("Cast", [column], [as_int], to=TensorProto.INT64, name=as_int),
        helper.make_node("ReduceMax", [as_int], [any_int], keepdims=0, name=any_int),
        helper.make_node("Cast", [any_int], [any_present], to=TensorProto.BOOL, name=any_present),
        helper.make_node(
            "If", [any_present], [result], then_branch=then_graph, else_branch=else_graph, name=s + "If"
        ),
    ]
    for c in consumers[out]:
        for k, name in enumerate(c.input):
            if name == out:
                c.input[k] = result
    dropped = {id(n) for n in inside}
    _write_sorted(g, [n for n in nodes if id(n) not in dropped] + new)


def _outer_reads(n: onnx.NodeProto) -> list[str]:
    """Values a node reads: its inputs, and for ``If`` the outer-scope values its branches read."""
    reads = [i for i in n.input if i]
    for attr in n.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            inner = {o for m in attr.g.node for o in m.output}
            reads += [i for m in attr.g.node for i in _outer_reads(m) if i not in inner]
    return reads


def _write_sorted(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Write ``nodes`` back into ``g`` in a topological order (Kahn's algorithm, stable: among ready nodes
    the earlier in ``nodes`` first), as ONNX requires."""
    produced = {o: k for k, n in enumerate(nodes) for o in n.output}
    deps = [{produced[i] for i in _outer_reads(n) if i in produced} for n in nodes]
    users: dict[int, list[int]] = {}
    for k, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(k)
    waiting = [len(d) for d in deps]
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users.get(k, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise ValueError("the rewritten graph has a cycle")
    sorted_nodes = [nodes[k] for k in order]
    del g.node[:]
    g.node.extend(sorted_nodes)


def present_mask_value(g: onnx.GraphProto) -> str:
    """The fusion's present mask [B, E] bool: the value read by the ``Where`` that puts the prior in place
    of absent experts' probabilities (the torch model's ``present_mask(expert_mask)``).

    Raises:
        ValueError: not found.
    """
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    # expert_probabilities = Exp(Where(Unsqueeze(present), log_probs, prior)).
    for name in outputs:
        n = producer.get(name)
        if n is not None and n.op_type == "Exp":
            where = producer.get(n.input[0])
            unsq = producer.get(where.input[0]) if where is not None and where.op_type == "Where" else None
            if unsq is not None and unsq.op_type == "Unsqueeze":
                return str(unsq.input[0])
    raise ValueError("the fusion's present mask was not found (expected Exp(Where(Unsqueeze(present), ...)))")


def skip_absent_experts(m: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite a contract-v2 fused graph (in place, and returned) so that the text, face and scene branches
    run only when at least one row of the batch has that expert present (module docstring).

    Raises:
        ValueError: the graph does not have the exporter's structure (a branch scope, its row gathers or
            the fusion's present mask not found); the model is then left partly rewritten.
    """
    g = m.graph
    present = present_mask_value(g)
    for scope in GATHERED_BRANCHES:
        _skip_gathered(g, scope)
    _skip_text(g, present)
    onnx.checker.check_model(m)
    return m


def rewrite_file(path: Path) -> None:
    """Apply :func:`skip_absent_experts` to the ONNX file at ``path`` (rewritten in place)."""
    m = onnx.load(str(path))
    onnx.save(skip_absent_experts(m), str(path))
