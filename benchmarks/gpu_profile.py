"""Where the fused model's time goes on an execution provider: ONNX Runtime's per-node profile of one padded
batch, and model-only time per ``cudnn_conv_algo_search`` mode.

    python -m benchmarks.gpu_profile [--provider CUDAExecutionProvider] [--batch 1,16] [--items 2] [--top 20]

Inputs are the service's own: :class:`app.inference.predictor.Predictor` prepares requests of the
``realistic`` mix (:mod:`benchmarks.realistic`, ``--items`` files per kind) and collates them with its padding
and buckets. The profile is ORT's (``SessionOptions.enable_profiling``; JSON trace events with ``cat`` "Node",
``dur`` in µs, ``args.provider`` and ``args.op_name``), summed over the ``--runs`` runs after two warm-up runs
(events before the second ``model_run`` ended are left out) and reported per node and per operator type, with
the provider each node ran on; control-flow nodes (``If``, ``Loop``, ``Scan``) are left out, since their
subgraphs' nodes are events of their own. Per ``cudnn_conv_algo_search`` mode: a fresh session's first run,
its steady median, and one run with one more row (a new shape on the warm session). Prints tables; writes
nothing else (the trace file is deleted). Used by ``benchmarks/gpu_check.sh`` on a GPU host; runs on a CPU
too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnxruntime as ort

from benchmarks.__main__ import ROOT, load_mixes

#: Operators whose time includes their subgraphs' nodes, which the profile lists separately.
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def _session(model: Path, provider: str, conv_search: str, profile: bool) -> Any:
    from app.inference.session import CUDA_OPTIONS

    opts = ort.SessionOptions()
    opts.enable_profiling = profile
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = ["CPUExecutionProvider"]
    if provider == "CUDAExecutionProvider":
        providers = [
            (provider, {**CUDA_OPTIONS, "cudnn_conv_algo_search": conv_search}),
            "CPUExecutionProvider",
        ]
    return ort.InferenceSession(str(model), sess_options=opts, providers=providers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=ROOT / "models" / "fused-sentiment")
    p.add_argument("--provider", default="CUDAExecutionProvider")
    p.add_argument("--batch", type=lambda v: [int(x) for x in v.split(",")], default=[1, 16])
    p.add_argument("--items", type=int, default=2, help="distinct files per realistic kind")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--conv-search", default="DEFAULT,HEURISTIC,EXHAUSTIVE")
    args = p.parse_args()

    from app.config import Settings
    from app.inference.predictor import Predictor
    from app.preprocessing.pipeline import RawInput

    settings = Settings(
        model_dir=args.model_dir.parent, model_name=args.model_dir.name, providers=["CPUExecutionProvider"]
    )
    predictor = Predictor(settings)
    predictor.load()
    assert predictor.model is not None
    model_file = predictor.model.loaded.model_file
    samples = load_mixes(["realistic"], ROOT.parent / "shared" / "data", args.items)["realistic"]
    prepared = [predictor.prepare(RawInput(s.text, s.image, s.audio)) for s in samples[: max(args.batch) + 1]]
    dtypes = {i.name: i.type for i in predictor.model.loaded.session.get_inputs()}
    np_types = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(uint8)": "uint8"}

    def feeds(b: int) -> dict[str, Any]:
        raw = predictor.collate(prepared[:b])
        return {
            k: v.astype(np_types.get(dtypes[k], v.dtype.name), copy=False)
            for k, v in raw.items()
            if k in dtypes
        }

    print(f"model {model_file}, provider {args.provider}, ORT {ort.__version__}")
    for b in args.batch:
        f = feeds(b)
        print(f"\n## batch {b}: inputs " + ", ".join(f"{k}{list(v.shape)}" for k, v in f.items()))
        sess = _session(model_file, args.provider, "DEFAULT", profile=True)
        for _ in range(2):
            sess.run(None, f)
        for _ in range(args.runs):
            sess.run(None, f)
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
        os.unlink(trace)
        runs = sorted(
            (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
            key=lambda e: e["ts"],
        )
        steady_from = runs[1]["ts"] + runs[1]["dur"]  # after the two warm-up runs
        by_node: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        by_op: dict[tuple[str, str], float] = defaultdict(float)
        for e in events:
            if (
                e.get("cat") != "Node"
                or not e.get("name", "").endswith("_kernel_time")
                or e["ts"] < steady_from
            ):
                continue
            a = e.get("args", {})
            if a.get("op_name") in CONTROL_FLOW:  # its subgraph's nodes are events of their own
                continue
            key = f"{e['name'][: -len('_kernel_time')]} [{a.get('op_name', '?')}, {a.get('provider', '?')}]"
            by_node[key][0] += e["dur"] / 1e3
            by_op[(a.get("op_name", "?"), a.get("provider", "?"))] += e["dur"] / 1e3
        n_runs = args.runs
        run_ms = [e["dur"] / 1e3 for e in runs]
        print(
            f"model_run ms (all {len(run_ms)} runs, warm-up first): " + ", ".join(f"{x:.1f}" for x in run_ms)
        )
        total = sum(v[0] for v in by_node.values()) / n_runs
        print(
            f"node kernel time per steady run (sum over nodes, control-flow nodes left out): {total:.1f} ms"
        )
        print("\n| op type | provider | ms per run |\n|---|---|---|")
        for (op, prov), ms in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"| {op} | {prov} | {ms / n_runs:.2f} |")
        print("\n| node | ms per run |\n|---|---|")
        for name, (ms, _) in sorted(by_node.items(), key=lambda kv: -kv[1][0])[: args.top]:
            print(f"| {name} | {ms / n_runs:.2f} |")
        if args.provider == "CUDAExecutionProvider":
            print(
                "\n| cudnn_conv_algo_search | first run of a fresh session ms | steady median ms | "
                f"then batch {b + 1} (a new shape) on the warm session ms |\n|---|---|---|---|"
            )
            other = feeds(b + 1)
            for mode in args.conv_search.split(","):
                s = _session(model_file, args.provider, mode, profile=False)
                t0 = time.perf_counter()
                s.run(None, f)
                first = 1e3 * (time.perf_counter() - t0)
                ts = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    s.run(None, f)
                    ts.append(1e3 * (time.perf_counter() - t0))
                t0 = time.perf_counter()
                s.run(None, other)
                new_shape = 1e3 * (time.perf_counter() - t0)
                print(f"| {mode} | {first:.1f} | {statistics.median(ts):.2f} | {new_shape:.1f} |")


if __name__ == "__main__":
    main()
