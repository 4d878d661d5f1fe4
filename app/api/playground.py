"""The playground page at ``/``: a static HTML + CSS + JavaScript form that calls ``POST /v1/predict``.

The files live in ``app/static/playground`` (package data, see ``[tool.setuptools.package-data]`` in
pyproject.toml), are read with :mod:`importlib.resources` and served as they are: no build step, no
template, no external host (the page's URLs are relative, so it also works under an ASGI ``root_path``).
A ``Content-Security-Policy`` limits the page to this server, plus ``blob:`` for the webcam snapshot and
recording previews (MDN, "Content-Security-Policy").
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from app.errors import ApiError, ErrorType

router = APIRouter(include_in_schema=False)

#: Where the page's CSS and JavaScript are served.
ASSETS_PREFIX = "/playground"

#: Asset file name (in ``app/static/playground``) → Content-Type.
ASSETS: dict[str, str] = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}

#: Only this server, plus ``blob:`` for previews of the snapshot, uploads and recordings. The bar widths
#: are set through the CSSOM (``element.style.width``), which ``style-src 'self'`` does not block.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def read_asset(name: str) -> bytes:
    """The bytes of ``name`` in ``app/static/playground`` (``index.html`` or one of :data:`ASSETS`).

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    return (files("app") / "static" / "playground" / name).read_bytes()


@router.get("/")
async def playground() -> HTMLResponse:
    """The playground page (HTML)."""
    return HTMLResponse(
        read_asset("index.html"),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@router.get(ASSETS_PREFIX + "/{name}")
async def asset(name: str) -> Response:
    """One of :data:`ASSETS` (a fixed list: no path from the request reaches the file system).

    Raises:
        ApiError: ``not_found`` (404) for any other name.
    """
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(ErrorType.NOT_FOUND, "no such route")
    return Response(read_asset(name), media_type=media_type, headers={"Cache-Control": "no-cache"})
