"""``clutchcall.errors`` lists every error it defines, each under ClutchCallError."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import clutchcall
import clutchcall.bridge.errors as bridge_errors
import clutchcall.errors as errors


def test_every_error_class_is_listed_in_all() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    }
    assert {"ClientClosedError", "MissingExtraError", "ResponseTooLargeError"} <= defined
    assert defined <= set(errors.__all__)
    for name in defined:
        assert issubclass(getattr(errors, name), errors.ClutchCallError), name
        assert name in (errors.__doc__ or ""), f"{name} is missing from the tree in the docstring"


def test_client_closed_and_missing_extra_keep_their_builtin_bases() -> None:
    assert issubclass(errors.ClientClosedError, RuntimeError)
    missing = errors.MissingExtraError("needs av", extra="audio", name="av")
    assert isinstance(missing, ImportError) and missing.name == "av" and missing.extra == "audio"


def test_every_error_is_exported_from_the_top_level_package() -> None:
    """Each ClutchCallError subclass of ``clutchcall.errors`` and ``clutchcall.bridge.errors``
    is reachable as ``clutchcall.<Name>`` and listed in ``clutchcall.__all__``."""
    found = {
        name: obj
        for module in (errors, bridge_errors)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, errors.ClutchCallError)
    }
    assert {"ClutchCallError", "BridgeTrackError", "MissingExtraError"} <= found.keys()
    for name, cls in found.items():
        assert name in clutchcall.__all__, name
        assert getattr(clutchcall, name) is cls, name


def test_every_error_defined_anywhere_in_the_package_is_exported() -> None:
    """Every public ClutchCallError subclass, whichever module of the package defines
    it (all of them imported), is ``clutchcall.<Name>`` and in ``clutchcall.__all__``."""
    modules = [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(clutchcall.__path__, "clutchcall.")
        if not info.name.endswith("__main__")
    ]
    assert "clutchcall.audio.errors" in {m.__name__ for m in modules}
    defined = {
        obj
        for module in modules
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, errors.ClutchCallError)
        and obj.__module__.startswith("clutchcall")
        and not obj.__name__.startswith("_")
    }
    assert {"CallEndedError", "AudioError", "WavFormatError"} <= {c.__name__ for c in defined}
    for cls in defined:
        assert cls.__name__ in clutchcall.__all__, cls
        assert getattr(clutchcall, cls.__name__) is cls, cls


def test_the_top_level_names_load_on_first_use() -> None:
    """``import clutchcall`` imports no layer; each name in ``__all__`` loads its own."""
    script = (
        "import sys, clutchcall\n"
        "assert clutchcall.__version__\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('clutchcall.'))\n"
        "print(loaded)\n"
        "for name in clutchcall.__all__: getattr(clutchcall, name)\n"
        "assert set(clutchcall.__all__) <= set(dir(clutchcall))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no_such_name"):
        clutchcall.no_such_name  # noqa: B018
