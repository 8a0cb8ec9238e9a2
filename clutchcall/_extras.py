"""Optional parts of the SDK and the extras that install them.

The base install (control plane and audio bridges) needs none of these; a module
that does says which ``pip install 'clutchcall[...]'`` brings what it lacks.
"""

from __future__ import annotations

from typing import NoReturn

from .errors import MissingExtraError

#: The third-party modules each extra installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "audio": ("av", "numpy"),
    "dev": ("starlette", "uvicorn", "av", "numpy"),
    "trio": ("trio",),
}


def raise_missing_extra(exc: ModuleNotFoundError, *, feature: str, extra: str) -> NoReturn:
    """Re-raise ``exc`` as :class:`MissingExtraError` if an ``extra``'s module is missing.

    A missing module that the extra does not provide (a broken install of one of
    its dependencies, say) is re-raised unchanged.
    """
    missing = (exc.name or "").partition(".")[0]
    if missing not in EXTRAS[extra]:
        raise exc
    raise MissingExtraError(
        f"{feature} needs {missing!r}, which is not installed; it comes with the "
        f"{extra!r} extra: pip install 'clutchcall[{extra}]'",
        extra=extra,
        name=missing,
    ) from None
