"""Third-party noise silenced: transformers' "Loading weights" bars and log warnings, peft's and
torch's UserWarnings, library FutureWarnings. Commands wrap model loading and inference in
`quiet_libraries()` unless the user asks for `--verbose`; the project's own warnings still show."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

NOISY_MODULES = r"(transformers|peft|accelerate|torch|huggingface_hub|segment_anything)(\.|$)"
"""Modules whose UserWarnings say nothing a user of `forgery` can act on."""


@contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Inside: no transformers progress bars, transformers logging at ERROR, no library warnings.
    Everything is restored on exit. `verbose=True` changes nothing."""
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=NOISY_MODULES)
            warnings.filterwarnings("ignore", message=".*base_model_name_or_path.*")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
