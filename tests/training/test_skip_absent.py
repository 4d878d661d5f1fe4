"""skip_absent_experts: the rewritten contract-v2 graph gives the same outputs as the exported one for
every combination of present experts, and the committed model carries the rewrite."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.training.export import export_onnx, ort_session, round_to_fp16
from app.training.fusion_v2 import V2_DYNAMIC_AXES, V2_OUTPUT_NAMES, with_scene
from app.training.skip_absent import rewrite_file, skip_absent_experts

from .conftest import REPO
from .helpers import random_fused
from .test_scene import PRIOR, _feeds, _random_scene

COMMITTED = REPO / "models" / "fused-sentiment" / "1" / "model.onnx"
IF_NODES = {"/text/skip/If", "/face/skip/If", "/scene/skip/If"}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-weight v2 model exported as ``msa train`` exports it, before and after the rewrite."""
    model = with_scene(random_fused(seed=5), _random_scene(6), temperature=1.3, prior=PRIOR)
    round_to_fp16(model)
    folder = tmp_path_factory.mktemp("skip")
    before, after = folder / "before.onnx", folder / "after.onnx"
    export_onnx(
        model, before, example=_feeds(2, 0), output_names=V2_OUTPUT_NAMES, dynamic_axes=V2_DYNAMIC_AXES
    )
    shutil.copy(before, after)
    rewrite_file(after)
    return before, after


def test_every_combination_of_present_experts_gives_the_same_outputs(graphs: tuple[Path, Path]) -> None:
    before, after = (ort_session(p) for p in graphs)
    rng = np.random.default_rng(0)
    cases = []
    for combo in itertools.product([0, 1], repeat=4):
        cases.append(np.array([combo]))  # one row: nothing of an absent expert is computed
        mixed = rng.integers(0, 2, (3, 4))
        mixed[0] = combo
        cases.append(mixed)  # mixed rows: the present ones are gathered, the others read the zero row
    for k, mask in enumerate(cases):
        feeds = _feeds(len(mask), k, mask)
        want = before.run(list(V2_OUTPUT_NAMES), feeds)
        got = after.run(list(V2_OUTPUT_NAMES), feeds)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-6, err_msg=f"mask {mask.tolist()}")


def test_absent_experts_run_on_a_small_padding_input_inside_if_nodes(graphs: tuple[Path, Path]) -> None:
    _, after = graphs
    m = onnx.load(str(after))
    assert {n.name for n in m.graph.node if n.op_type == "If"} == IF_NODES
    # The encoders stay in the main graph (ONNX Runtime pre-packs only a graph's own weights).
    assert any(n.name.startswith("/scene/") and n.op_type == "Conv" for n in m.graph.node)


def test_a_graph_without_the_exporters_structure_is_refused(graphs: tuple[Path, Path]) -> None:
    _, after = graphs
    with pytest.raises(ValueError, match="Gather of present rows"):
        skip_absent_experts(onnx.load(str(after)))  # already rewritten: no padding-row gather left


@pytest.mark.skipif(not COMMITTED.is_file(), reason=f"{COMMITTED} not committed")
def test_the_committed_model_carries_the_rewrite() -> None:
    m = onnx.load(str(COMMITTED), load_external_data=False)
    assert {n.name for n in m.graph.node if n.op_type == "If"} == IF_NODES
