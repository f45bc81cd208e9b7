"""The sources of the generic method tests: a photo for most methods, a rendered document (with its
layout) for the text methods (subject "document"), two real portraits for the face methods (subject
"portrait")."""

from __future__ import annotations

import pytest

from forgery_synth.methods import METHODS


@pytest.fixture(scope="session")
def method_sources(photo, donor_photo, document_page, document_donor, face_photo, face_donor):
    """``method_sources(name) -> (source HxWx3 uint8, donor or None, layout or None)`` for a method."""

    def sources(name: str):
        method = METHODS[name]
        if method.subject == "document":
            image, layout = document_page
            return image, document_donor[0] if method.needs_donor else None, layout
        if method.subject == "portrait":
            return face_photo, face_donor if method.needs_donor else None, None
        return photo, donor_photo if method.needs_donor else None, None

    return sources
