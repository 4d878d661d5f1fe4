"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served with their assets from this process, no CDN.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so on a host without internet they are blank
(NOTES.md, "Swagger UI offline"). The JavaScript, CSS and favicon come from the ``fastapi-offline`` wheel
(MIT; it bundles swagger-ui-dist 5, Apache-2.0, and the ReDoc 2 standalone build, MIT) and are served under
:data:`ASSETS_PREFIX`; the HTML is FastAPI's own ``get_swagger_ui_html`` / ``get_redoc_html`` pointed at them
(FastAPI docs, "Custom Docs UI Static Assets (Self-Hosting)"). Every URL in the pages is a path on this
server, prefixed with the ASGI ``root_path`` when the service runs behind a path-rewriting proxy.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.errors import ApiError, ErrorType

router = APIRouter(include_in_schema=False)

#: Where the assets are served.
ASSETS_PREFIX = "/docs-assets"

#: Asset file name (in the ``fastapi_offline/static`` package folder) → Content-Type.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

#: Swagger UI options (swagger-ui docs, "Configuration"): FastAPI's defaults, plus no call to the public
#: validator badge service (``validatorUrl: null``), so the page talks to this server only.
SWAGGER_UI_PARAMETERS: dict[str, object] = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "validatorUrl": None,
}


def asset_dir() -> Path:
    """The folder holding :data:`ASSETS` inside the installed ``fastapi_offline`` package."""
    return Path(str(files("fastapi_offline") / "static"))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, with its assets from this server."""
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{base}{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS_PREFIX}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for ``/openapi.json``, with its script from this server and no Google Fonts."""
    base = _base(request)
    return get_redoc_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{base}{ASSETS_PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{base}{ASSETS_PREFIX}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS_PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of :data:`ASSETS` (a fixed list: no path from the request reaches the file system).

    Raises:
        ApiError: ``not_found`` (404) for any other name.
    """
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(ErrorType.NOT_FOUND, "no such route")
    return FileResponse(
        asset_dir() / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )
