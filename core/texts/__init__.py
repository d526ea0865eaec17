"""The catalogue of patient-facing text: message ids -> English, ready for translation (Babel).

There is one catalogue, kept in the `text_<part>.py` modules of two packages, each module with
`MESSAGES: dict[str, str]` (message id -> English text):
- `core/texts/` (this package): text that a process other than the API sends to patients, today
  the reminder e-mail of the alert service (`text_reminder_email.py`). It is here because the
  alert service may not import the API (import-linter: processes are independent) while both
  may import core.
- `api/portal/`: the patient portal's pages and JSON words (`api/portal/text_*.py`).

`api.portal.text.catalogue()` merges both packages and is the whole catalogue: ids are unique
across every module of both (a duplicate raises `ValueError` the first time it loads), and the
readability test and any extraction walk `api.portal.text.catalogue_modules()`. A process that
cannot import the API looks its words up with `t` of this module, which reads this package's
modules only (a subset of the same catalogue, the same ids and texts).

Placeholders are `str.format` named fields (`{limit}`), never positional ones, so a translator
can move them within a sentence. `t` raises `KeyError` for an unknown id: a typo fails loudly in
tests rather than showing a blank.

How a translation catalogue would plug in (Babel-ready, nothing to rewrite):
- Extraction: the English texts are the msgids' source. A small script (or a Babel extractor
  registered for `core/texts/text_*.py` and `api/portal/text_*.py`, i.e. the modules of
  `catalogue_modules()`) writes each `MESSAGES` entry to one `.pot` file with the message id as
  `msgctxt` and the English text as `msgid`, so equal English texts in two places can still be
  translated differently.
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
import sys
from functools import cache
from types import ModuleType

PREFIX = "text_"


def modules_of(*packages: ModuleType) -> list[ModuleType]:
    """The `text_*` modules of these packages, in package order, then by module name."""
    found: list[ModuleType] = []
    for package in packages:
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith(PREFIX):
                found.append(importlib.import_module(f"{package.__name__}.{info.name}"))
    return found


def merge(*packages: ModuleType) -> dict[str, str]:
    """Every message of every `text_*` module of these packages, by id; ValueError when two
    modules claim the same id."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for module in modules_of(*packages):
        messages: dict[str, str] = module.MESSAGES
        for msg_id, text in messages.items():
            if msg_id in merged:
                raise ValueError(f"message id {msg_id!r} is in both {owner[msg_id]} and {module.__name__}")
            merged[msg_id] = text
            owner[msg_id] = module.__name__
    return merged


@cache
def catalogue() -> dict[str, str]:
    """The messages of this package's modules (loaded once per process)."""
    return merge(sys.modules[__name__])


def t(msg_id: str, **values: object) -> str:
    """The text of `msg_id` (of this package's modules) with its named placeholders filled."""
    return catalogue()[msg_id].format(**values)
