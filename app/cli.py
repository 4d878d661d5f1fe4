"""Command line: ``msa serve | predict | train``.

``msa train`` needs the ``train`` extra (torch); it is imported lazily so the server never loads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from app.config import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.head_guard import HeadLimitedHttpToolsProtocol

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
        access_log=False,  # app.access logs one line per request with its request id
        http=HeadLimitedHttpToolsProtocol,  # request-head size limit and deadline (app/head_guard.py)
    )
    return 0


async def _predict_async(args: argparse.Namespace, settings: Settings) -> dict[str, object]:
    from app.inference.predictor import Predictor, RawInput

    raw = RawInput(
        text=args.text,
        image=Path(args.image).read_bytes() if args.image else None,
        audio=Path(args.audio).read_bytes() if args.audio else None,
    )
    predictor = Predictor(settings)
    await predictor.start()
    try:
        result = await predictor.predict(raw)
    finally:
        await predictor.stop()
    return result.model_dump(mode="json")


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from app.preprocessing.errors import PreprocessingError

    if not (args.text or args.image or args.audio):
        sys.stderr.write("msa predict: give at least one of --text, --image, --audio\n")
        return 2
    logging.basicConfig(level=logging.WARNING)
    try:
        result = asyncio.run(_predict_async(args, settings.model_copy(update={"warmup": False})))
    except PreprocessingError as exc:
        sys.stderr.write(f"msa predict: {type(exc).__name__}: {exc.message}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def _train(argv: list[str]) -> int:
    import importlib

    try:
        train_main = importlib.import_module("app.training.pipeline").main
    except ModuleNotFoundError as exc:
        sys.stderr.write(
            f"msa train needs the training extra ({exc.name} is missing): pip install -e '.[train]'\n"
        )
        return 2
    return int(train_main(argv))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``msa`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _train(argv[1:])
    parser = argparse.ArgumentParser(prog="msa", description="Multimodal sentiment inference service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (settings from SENTIMENT_* env variables)")
    serve.add_argument("--host", default=None, help="bind address (default: SENTIMENT_HOST)")
    serve.add_argument("--port", type=int, default=None, help="bind port (default: SENTIMENT_PORT)")
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: SENTIMENT_WORKERS)"
    )
    pred = sub.add_parser("predict", help="run the same pipeline locally on files and print the JSON")
    pred.add_argument("--text", default=None)
    pred.add_argument("--image", default=None, help="image file")
    pred.add_argument("--audio", default=None, help="audio file")
    sub.add_parser("train", help="train and export the fused model (needs the train extra; see --help)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "predict":
        return _predict(args, settings)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
