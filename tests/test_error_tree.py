"""``clutchcall.errors`` lists every error it defines, each under ClutchCallError."""

from __future__ import annotations

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
