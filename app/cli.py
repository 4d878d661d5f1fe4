"""Command line: ``msa serve | predict | train``.

``msa train`` needs the ``train`` extra (torch); it is imported lazily so the server never loads it.

Manners: a user error (a missing or unreadable file, a port in use, an invalid ``SENTIMENT_*`` setting,
a model that cannot be loaded) is one line on stderr and a non-zero exit status, never a traceback; bad
arguments are argparse's usage error (exit 2). ``msa serve`` exits 0 after a graceful shutdown on
SIGINT (Ctrl-C) or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from app.config import Settings
from app.logging_setup import configure_logging, log_config

#: Seconds ``msa serve`` lets requests in flight finish after SIGTERM or SIGINT before it closes them
#: (uvicorn's ``timeout_graceful_shutdown``). Deployments wait longer before SIGKILL: Kubernetes'
#: terminationGracePeriodSeconds and compose's stop_grace_period in deploy/ (tests/deploy check them).
GRACEFUL_SHUTDOWN_TIMEOUT_S = 30


class CliError(Exception):
    """A user error: printed as ``msa <command>: <message>`` (one line), exit status 1."""


def _port_is_free(host: str, port: int) -> None:
    """Bind ``host:port`` once and release it, so a port in use is reported before the model loads.

    Raises:
        CliError: the address cannot be bound (in use, not permitted, unknown host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # uvicorn binds with SO_REUSEADDR too: a port left in TIME_WAIT by a previous run is free for it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            hint = " (another process listens there; choose one with --port or SENTIMENT_PORT)"
            reason = exc.strerror or str(exc)
            raise CliError(
                f"cannot listen on {host}:{port}: {reason}" + (hint if exc.errno == errno.EADDRINUSE else "")
            ) from exc


def _exit_quietly(_signum: int, _frame: FrameType | None) -> None:
    """Handler restored (and re-raised) by uvicorn after its graceful shutdown: exit 0, no traceback."""
    raise SystemExit(0)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.head_guard import HeadLimitedHttpToolsProtocol

    host: str = args.host or settings.host
    port: int = args.port or settings.port
    _port_is_free(host, port)
    # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown), then restores the previous handlers and
    # raises the signal again: with these handlers that ends in exit status 0 instead of a
    # KeyboardInterrupt traceback (SIGINT) or death by signal (SIGTERM; `make serve` would print
    # "make: *** [serve] Terminated").
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        # One handler and format for uvicorn's lines and the service's, applied in every worker process.
        log_config=log_config(settings.log_level, settings.log_format),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
        access_log=False,  # app.access logs one line per request with its request id
        http=HeadLimitedHttpToolsProtocol,  # request-head size limit and deadline (app/head_guard.py)
    )
    return 0


def _check_readable(option: str, name: str | None) -> None:
    """:class:`CliError` unless ``--image`` / ``--audio`` names a readable file; no model is loaded yet."""
    if name is None:
        return
    try:
        with open(name, "rb"):
            pass
    except IsADirectoryError as exc:
        raise CliError(f"{option} {name}: is a directory, not a file") from exc
    except OSError as exc:
        raise CliError(f"{option} {name}: {exc.strerror or exc}") from exc


async def _predict_async(args: argparse.Namespace, settings: Settings) -> dict[str, object]:
    from app.api.responses import predict_response
    from app.inference.predictor import Predictor
    from app.preprocessing.pipeline import RawInput

    raw = RawInput(
        text=args.text,
        image=Path(args.image).read_bytes() if args.image else None,
        audio=Path(args.audio).read_bytes() if args.audio else None,
    )
    predictor = Predictor(settings)
    await predictor.start()
    try:
        prediction = await predictor.predict(raw)
    finally:
        await predictor.stop()
    assert predictor.model is not None
    return predict_response(prediction, predictor.model, None).model_dump(mode="json")


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from app.inference.repository import ModelLoadError
    from app.preprocessing.errors import PreprocessingError

    # Files first: a typo in a path is reported before the model loads.
    _check_readable("--image", args.image)
    _check_readable("--audio", args.audio)
    if not logging.getLogger().handlers:  # like logging.basicConfig: keep a host program's handlers
        configure_logging("warning", settings.log_format)
    try:
        result = asyncio.run(_predict_async(args, settings.model_copy(update={"warmup": False})))
    except PreprocessingError as exc:
        raise CliError(f"{type(exc).__name__}: {exc.message}") from exc
    except ModelLoadError as exc:
        raise CliError(f"cannot load the model: {exc}") from exc
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


def _settings() -> Settings:
    """Settings from the environment; an invalid ``SENTIMENT_*`` value is one :class:`CliError` line."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"SENTIMENT_{'_'.join(str(p) for p in err['loc']).upper()}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise CliError(f"invalid setting: {problems}") from exc


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
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
    return parser, {"serve": serve, "predict": pred}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``msa`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _train(argv[1:])
    parser, commands = _parser()
    args = parser.parse_args(argv)  # bad arguments: usage error, exit 2
    if args.command == "serve" and args.port is not None and not 1 <= args.port <= 65535:
        commands["serve"].error(f"argument --port: {args.port} is not a port number (1-65535)")
    if args.command == "predict" and not (args.text or args.image or args.audio):
        commands["predict"].error("give at least one of --text, --image, --audio")
    try:
        settings = _settings()
        if args.command == "serve":
            return _serve(args, settings)
        return _predict(args, settings)
    except CliError as exc:
        sys.stderr.write(f"msa {args.command}: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
