"""Offline by default: every ``from_pretrained`` of the trainer reads local folders and the Hugging Face
cache only (``local_files_only=True``) unless downloads were allowed (``--allow-download`` on train,
predict, eval, export and ablate, which sets :data:`ALLOW_DOWNLOAD_ENV` so child processes inherit it).

A model that is neither a local folder nor cached raises :class:`ModelNotAvailable` with one line that
names the option and the command that fetches it (the CLI prints it and exits 2, no traceback).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

ALLOW_DOWNLOAD_ENV = "FORGERY_ALLOW_DOWNLOAD"
"""Set to 1 by ``--allow-download``: from_pretrained may then fetch from the hub."""


class ModelNotAvailable(FileNotFoundError):
    """A model (backbone, tokenizer, processor) that is not on this machine and may not be downloaded."""


def downloads_allowed() -> bool:
    """Whether ``from_pretrained`` may download (the one reader of :data:`ALLOW_DOWNLOAD_ENV`)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def allow_downloads(allowed: bool = True) -> None:
    """Allow (or forbid) downloads for this process and the processes it starts."""
    if allowed:
        os.environ[ALLOW_DOWNLOAD_ENV] = "1"
    else:
        os.environ.pop(ALLOW_DOWNLOAD_ENV, None)


def missing_model_message(name: str, what: str = "model") -> str:
    """One line: what is missing, the option that allows a download and the command that fetches it."""
    return (f"{what} {name!r} is not a local folder and not in the Hugging Face cache, and nothing is downloaded "
            f"without --allow-download: fetch it once with `hf download {name}` (huggingface-cli download), "
            "pass --allow-download, or give a local folder")


def load_pretrained(loader: Callable[..., Any], name: str | Path, what: str = "model", **kwargs: Any) -> Any:
    """``loader(name, local_files_only=not downloads_allowed(), **kwargs)``; a name that is not a local
    path and cannot be loaded raises :class:`ModelNotAvailable` (one line, see module doc)."""
    name = str(name)
    allowed = downloads_allowed()
    try:
        return loader(name, local_files_only=not allowed, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(name).exists():
            raise  # a local folder with a problem: its own error says which file
        if allowed:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotAvailable(f"{what} {name!r} could not be loaded or downloaded: {first}") from None
        raise ModelNotAvailable(missing_model_message(name, what)) from None
