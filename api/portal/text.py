"""Look up a patient-facing message by id: `t("health.above_limit", limit=140)`.

Every `api/portal/text_<part>.py` module exposes `MESSAGES: dict[str, str]` (message id ->
English text). Ids are unique across modules; `t` raises `KeyError` for an unknown id and
`ValueError` if two modules claim the same id (found the first time the catalogue loads).
Placeholders are `str.format` named fields (`{limit}`), never positional ones, so a
translator can move them within a sentence.

How a translation catalogue would plug in (Babel-ready, nothing to rewrite):
- Extraction: the English texts are the msgids' source. A small script (or a Babel extractor
  registered for `api/portal/text_*.py`) writes each `MESSAGES` entry to a `.pot` file with the
  message id as `msgctxt` and the English text as `msgid`, so equal English texts in two places
  can still be translated differently.
- Translation: translators fill `.po` files per locale; `pybabel compile` makes `.mo` files.
- Lookup: `t` would take the locale (from the patient's profile or `Accept-Language`), load a
  `babel.support.Translations` for it once, and return `translations.pgettext(msg_id, english)`
  before formatting; missing translations fall back to the English text. The named
  placeholders survive translation unchanged, and `str.format` fills them in the same way.
Until then every patient sees English.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import api.portal

PREFIX = "text_"


@cache
def catalogue() -> dict[str, str]:
    """Every message of every `api/portal/text_*.py` module, by id (loaded once per process)."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(api.portal.__path__), key=lambda m: m.name):
        if not info.name.startswith(PREFIX):
            continue
        module = importlib.import_module(f"api.portal.{info.name}")
        messages: dict[str, str] = module.MESSAGES
        for msg_id, text in messages.items():
            if msg_id in merged:
                raise ValueError(f"message id {msg_id!r} is in both {owner[msg_id]} and {info.name}")
            merged[msg_id] = text
            owner[msg_id] = info.name
    return merged


def t(msg_id: str, **values: object) -> str:
    """The text of `msg_id` with its named placeholders filled from `values`.

    Raises KeyError for an unknown id (a typo must fail loudly in tests, not show a blank).
    """
    text = catalogue()[msg_id]
    return text.format(**values)
