"""Look up a patient-facing message by id: `t("health.above_limit", limit=140)`.

This is the whole catalogue of patient-facing text (core/texts/__init__.py says how it is kept
and how a Babel translation would plug in): every `api/portal/text_<part>.py` module and every
`core/texts/text_<part>.py` module (text other processes send, e.g. the reminder e-mail) exposes
`MESSAGES: dict[str, str]` (message id -> English text). Ids are unique across all of them; `t`
raises `KeyError` for an unknown id and `ValueError` if two modules claim the same id (found
the first time the catalogue loads). Placeholders are `str.format` named fields (`{limit}`),
never positional ones, so a translator can move them within a sentence. Until a translation
plugs in, every patient sees English.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import api.portal
import core.texts

PREFIX = core.texts.PREFIX
# Where the catalogue's modules are: text other processes send first, then the portal's.
PACKAGES: tuple[ModuleType, ...] = (core.texts, api.portal)


def catalogue_modules() -> list[ModuleType]:
    """Every module of the catalogue (what extraction and the readability test walk)."""
    return core.texts.modules_of(*PACKAGES)


@cache
def catalogue() -> dict[str, str]:
    """Every message of every catalogue module, by id (loaded once per process)."""
    return core.texts.merge(*PACKAGES)


def t(msg_id: str, **values: object) -> str:
    """The text of `msg_id` with its named placeholders filled from `values`.

    Raises KeyError for an unknown id (a typo must fail loudly in tests, not show a blank).
    """
    text = catalogue()[msg_id]
    return text.format(**values)
