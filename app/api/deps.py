"""Request-scoped dependencies: the predictor, settings and the optional API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import ApiError, ErrorType
from app.inference.predictor import Predictor


async def get_predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """401 unless the request carries the configured key (``Authorization: Bearer`` or ``X-API-Key``).

    Constant-time comparison (``hmac.compare_digest``). No-op when ``SENTIMENT_API_KEY`` is unset.
    """
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    supplied = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not supplied and auth[:7].lower() == "bearer ":
        supplied = auth[7:].strip()
    # Starlette decodes header bytes as latin-1; encoding back gives the bytes the client sent (UTF-8 for a
    # non-ASCII key), which is what the configured key is compared with.
    if not supplied or not hmac.compare_digest(supplied.encode("latin-1"), expected):
        raise ApiError(
            ErrorType.UNAUTHORIZED, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
