"""Placing scenarios: choose the patients for each requested scenario (deterministically
from the seed) and put them in the context's book with their expectations."""

from __future__ import annotations

import numpy as np

from devices.simulator.physiology import stable_key
from devices.simulator.scenario_kinds import REGISTRY
from devices.simulator.scenarios import Book, Context, Scenario, ScenarioError, ScenarioRequest


def place(requests: list[ScenarioRequest], ctx: Context) -> Book:
    """Choose patients for each request (deterministically from the seed) and place them."""
    book = ctx.book
    used: set[int] = set()
    for ordinal, request in enumerate(requests):
        cls = REGISTRY[request.name]
        patients = _choose_patients(request, cls, ctx, used, ordinal)
        for patient in patients:
            used.add(patient)
            book.add(cls(ctx, patient, request.params, ordinal))
    for scenario in book.scenarios:
        scenario.expect()
    return book


def _eligible(cls: type[Scenario], ctx: Context, patient: int) -> bool:
    classes = {d.device_class for d in ctx.by_patient.get(patient, [])}
    return all(n in classes for n in cls.needs)


def _choose_patients(
    request: ScenarioRequest, cls: type[Scenario], ctx: Context, used: set[int], ordinal: int
) -> list[int]:
    pop = ctx.population
    wanted = request.params.get("patient")
    if wanted:
        index = int(wanted[1:]) if wanted.startswith("#") and wanted[1:].isdigit() else pop.index.get(wanted)
        if index is None or not 0 <= index < len(pop):
            raise ScenarioError(f"{request.name}: unknown patient {wanted!r}")
        if not _eligible(cls, ctx, index):
            raise ScenarioError(f"{request.name}: patient {pop.ids[index]} lacks a {' / '.join(cls.needs)}")
        return [index]
    count = int(request.params.get("patients", "1"))
    eligible = [i for i in range(len(pop)) if _eligible(cls, ctx, i)]
    if len(eligible) < count:
        raise ScenarioError(
            f"{request.name}: needs {count} patient(s) with {' + '.join(cls.needs) or 'any device'}, "
            f"found {len(eligible)}"
        )
    rng = np.random.default_rng(stable_key(ctx.seed, f"scenario:{ordinal}:{request.name}"))
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    fresh = [i for i in order if i not in used]
    chosen = (fresh + [i for i in order if i in used])[:count]
    return sorted(chosen)
