"""A second synthetic population, unlike the first, to check that training adapts the matcher.

Where ``populations.py`` draws Kenyan/Ugandan names with phones, sex and CHT place ids, this one
draws Yoruba, Twi and Hausa names (Faker's ``yo_NG``, ``tw_GH`` and ``ha_NG`` tables, with a
Zipf-like weighting so that a few names are very common), records **no phone and no sex**, and
writes place and area as **codes** (a village code and a district code). Its noise is different
too: transliterated vowels and doubled letters, names run together or split, given and family
names swapped, dates of birth known only as a year, day and month swapped, ages re-estimated;
people move village within their district. 20 % of the incoming people are truly new, a third of
them relatives of existing people (same village, same family name). With ``cht_dates=True``, as in
the first population, two thirds of the registered estimates are written the way CHT's person form
writes an age (the entry day's month and day, ``approx``) and 2 % of the list's copied dates have a
year typo (``standins.populations.DateDraws``, drawn apart from the rest); off by default.

.. code-block:: python

    data = west_population(5000, 5000, seed=11)  # a standins.populations.Population
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from itertools import accumulate

from faker.providers.person.ha_NG import Provider as HausaNames
from faker.providers.person.tw_GH import Provider as TwiNames
from faker.providers.person.yo_NG import Provider as YorubaNames

from cht_bridge.matching.records import Person
from standins.populations import DateDraws, Population

REFERENCE_DAY = date(2026, 6, 1)
_VOWEL_SWAPS = {"o": "u", "u": "o", "e": "i", "i": "e", "a": "e"}


class _Table:
    """Names weighted 1/rank (Zipf), in a seeded shuffled order: a few names are very common."""

    def __init__(self, names: list[str], rng: random.Random) -> None:
        self.names = sorted(set(names))
        rng.shuffle(self.names)
        self.cumulative = list(accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(len(self.names))))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.names, cum_weights=self.cumulative)[0]


def west_population(
    n_existing: int, n_incoming: int, seed: int = 11, new_share: float = 0.2, cht_dates: bool = False
) -> Population:
    """Existing people and an incoming list with known truth (see the module docstring);
    ``cht_dates`` as in ``standins.populations.population`` (off: the data as it always was)."""
    rng, dates = random.Random(seed), DateDraws.for_seed(seed, on=cht_dates)
    given = _Table(
        [*YorubaNames.first_names_male, *YorubaNames.first_names_female, *TwiNames.first_names_male]
        + [*TwiNames.first_names_female, *HausaNames.first_names_male, *HausaNames.first_names_female],
        rng,
    )
    family = _Table([*YorubaNames.last_names, *TwiNames.last_names, *HausaNames.last_names], rng)
    districts = [f"D{d:02d}" for d in range(max(2, n_existing // 2000))]
    villages = {d: [f"{d}V{v:03d}" for v in range(25)] for d in districts}
    existing = _people(rng, given, family, districts, villages, n_existing, "pop", dates)
    n_new = round(n_incoming * new_share)
    known = rng.sample(existing, min(n_incoming - n_new, len(existing)))
    newcomers = _people(rng, given, family, districts, villages, n_new, "new", dates)
    for i, person in enumerate(newcomers):
        if rng.random() < 0.33:  # a relative of someone registered: same village and family name
            relative = rng.choice(existing)
            newcomers[i] = Person(
                id=person.id,
                given_name=person.given_name,
                family_name=relative.family_name,
                date_of_birth=person.date_of_birth,
                date_of_birth_estimated=person.date_of_birth_estimated,
                place=relative.place,
                area=relative.area,
            )
    sources = [(p, p.id) for p in known] + [(p, None) for p in newcomers]
    rng.shuffle(sources)
    incoming, truth = [], {}
    for position, (person, real) in enumerate(sources):
        row_id = f"list-{position:06d}"
        incoming.append(_list_version(person, row_id, rng, villages, dates))
        truth[row_id] = real
    return Population(existing, incoming, truth, {})


def _people(
    rng: random.Random,
    given: _Table,
    family: _Table,
    districts: list[str],
    villages: dict[str, list[str]],
    n: int,
    prefix: str,
    dates: DateDraws,
) -> list[Person]:
    people = []
    while len(people) < n:
        district = rng.choice(districts)
        village = rng.choice(villages[district])
        surname = family.draw(rng)
        for _ in range(min(n - len(people), rng.choice((1, 2, 3, 4, 5, 6)))):
            first = given.draw(rng)
            other = given.draw(rng) if rng.random() < 0.35 else ""
            person_id = f"{prefix}-{len(people):07d}"
            surname_drawn = surname if rng.random() < 0.8 else family.draw(rng)
            born, estimated = dates.cht_form(person_id, *_birth(rng), REFERENCE_DAY)
            people.append(
                Person(
                    id=person_id,
                    given_name=f"{first} {other}".strip(),
                    family_name=surname_drawn,
                    date_of_birth=born,
                    date_of_birth_estimated=estimated,
                    place=village,
                    area=(district,),
                )
            )
    return people


def _birth(rng: random.Random) -> tuple[str | None, date]:
    """The date the register holds, and the true one."""
    born = REFERENCE_DAY - timedelta(days=rng.randrange(0, 80 * 365))
    roll = rng.random()
    if roll < 0.03:
        return None, born
    if roll < 0.2:
        return f"{born.year}-01-01", born  # only the year is known
    return born.isoformat(), born


def _list_version(
    person: Person, row_id: str, rng: random.Random, villages: dict[str, list[str]], dates: DateDraws
) -> Person:
    tokens = [*(person.given_name or "").split(), *(person.family_name or "").split()]
    if len(tokens) >= 3 and rng.random() < 0.25:
        del tokens[1]  # the second given name left out
    if tokens and rng.random() < 0.15:
        i = rng.randrange(len(tokens))
        tokens[i] = _misspell(tokens[i], rng)
    if len(tokens) >= 2 and rng.random() < 0.04:
        tokens = [tokens[0] + tokens[1], *tokens[2:]]  # two names run together
    given, family = " ".join(tokens[:-1]) or None, tokens[-1] if tokens else None
    if rng.random() < 0.25:
        given, family = family, given  # surname written first
    district = person.area[0] if person.area else None
    place = person.place
    roll = rng.random()
    if roll < 0.07 and district:
        place = rng.choice(villages[district])  # moved within the district
    elif roll < 0.12:
        place = None
    return Person(
        id=row_id,
        given_name=given,
        family_name=family,
        date_of_birth=_list_date(dates.listed.get(person.id, person.date_of_birth), rng, dates),
        place=place,
        area=(district,) if district and rng.random() < 0.9 else (),
    )


def _misspell(token: str, rng: random.Random) -> str:
    if len(token) < 4:
        return token
    i = rng.randrange(1, len(token) - 1)
    roll = rng.random()
    if roll < 0.4 and token[i] in _VOWEL_SWAPS:
        return token[:i] + _VOWEL_SWAPS[token[i]] + token[i + 1 :]  # transliterated vowel
    if roll < 0.6:
        return token[:i] + token[i] + token[i:]  # doubled letter
    if roll < 0.8:
        return token[:i] + token[i + 1 :]  # letter left out
    return token[:i] + rng.choice("bdgklmnrstwy") + token[i + 1 :]


def _list_date(iso: str | None, rng: random.Random, dates: DateDraws) -> str | None:
    if iso is None or rng.random() < 0.04:
        return None
    born = date.fromisoformat(iso)
    roll = rng.random()
    if roll < 0.1:
        return f"{born.year}-01-01"
    if roll < 0.15 and born.day <= 12 and born.day != born.month:
        return date(born.year, born.day, born.month).isoformat()
    if roll < 0.22:
        return born.replace(year=born.year + rng.choice((-1, 1)), day=min(born.day, 28)).isoformat()
    if roll < 0.26:
        return born.replace(day=min(28, max(1, born.day + rng.choice((-3, -1, 1, 3))))).isoformat()
    if dates.typo():
        return dates.year_typo(born, REFERENCE_DAY.year).isoformat()  # a digit of the year mis-keyed
    return iso
