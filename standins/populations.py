"""A synthetic East-African population for measuring the patient matcher, with a fixed seed.

Existing people are CHT contacts in households under CHW areas; incoming people are the "EMR
versions" of some of them (typos, O-/A- name pairs, token-order swaps, dropped middle names,
surnames changed at marriage, estimated dates of birth, phones written every way a spreadsheet
allows, missing values) plus people who are truly new, many of them relatives of existing people
(same household phone, place and family name), which is where wrong links come from.

With ``cht_dates=True`` estimated dates of birth are written as each system writes them: most CHT
estimates the way CHT's person form does (an age entered on a day becomes that day's month and day,
that many years back, with ``date_of_birth_method: approx``; :data:`CHT_FORM_SHARE`), the rest as
1 January (imported registers); list rows carry a few year typos (:data:`YEAR_TYPO_SHARE`). These
draws come from a second generator seeded from ``seed`` (:class:`DateDraws`), so everything else is
drawn as without them. Off by default: the default data is the benchmark's yardstick, the data every
earlier result was measured on (``python -m bench.matching --cht-dates`` measures the other).

Names are drawn, frequency-weighted, from Faker's ``en_KE`` person tables (Forebears incidence)
and, uniformly, from its ``sw`` tables; Faker is only read for its data, offline.

.. code-block:: python

    existing, incoming, truth, duplicates = population(5000, 5000, seed=7)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, NamedTuple

from faker.providers.person.en_KE import Provider as KenyanNames
from faker.providers.person.sw import Provider as SwahiliNames

from cht_bridge.matching.records import Person

REFERENCE_DAY = date(2026, 1, 1)
COUNTRY_CODES = {"KE": "254", "UG": "256"}
#: Share of CHT's estimated dates written the person form's way (``approx``, the entry day's month
#: and day). A CHW creates a person with that form, and when the mother only knows an age the form
#: asks for the age; the other third are 1 January, as a register imported in bulk (cht-conf
#: ``csv-to-docs``) or an older form wrote an age. Two thirds: most people in a CHT instance were
#: registered by CHWs, not imported; no public figure says how many, so the README gives both
#: kinds' results.
CHT_FORM_SHARE = 2 / 3
#: Share of the list's copied dates with one digit of the year wrong (1987 for 1981): 2 % of
#: dates copied by hand, within the 0.5-4 % per-field keying error rates reported for manual data
#: entry in clinics; three in four are the last digit.
YEAR_TYPO_SHARE = 0.02
#: CHT persons were registered over the years before the list's day: the entry days of the form.
REGISTRATION_YEARS = 6
_MOBILE_PREFIXES = ("70", "71", "72", "74", "79", "11", "10")
_PLACEHOLDERS = ("0700000000", "0711111111", "0123456789", "0722222222")
# Luo names mark sex by their first letter: the male O- form and the female A- form.
O_A_PAIRS = {
    "Otieno": "Atieno",
    "Odhiambo": "Adhiambo",
    "Ochieng": "Achieng",
    "Omondi": "Amondi",
    "Onyango": "Anyango",
    "Okoth": "Akoth",
    "Owino": "Awino",
    "Ouma": "Auma",
}


class Population(NamedTuple):
    """``truth`` maps every incoming id to the existing id it is, or ``None`` (truly new);
    ``duplicates`` maps a later incoming id to the earlier incoming id naming the same person."""

    existing: list[Person]
    incoming: list[Person]
    truth: dict[str, str | None]
    duplicates: dict[str, str]


@dataclass
class _Names:
    """Cumulative-weight tables for fast weighted draws."""

    male: tuple[list[str], list[float]]
    female: tuple[list[str], list[float]]
    family: tuple[list[str], list[float]]

    @classmethod
    def load(cls) -> _Names:
        def table(weighted: dict[str, float], uniform: tuple[str, ...], uniform_share: float) -> tuple:
            total = sum(weighted.values())
            each = total * uniform_share / (1 - uniform_share) / len(uniform)
            merged = dict(weighted)
            for name in uniform:
                merged[name] = merged.get(name, 0.0) + each
            names = sorted(merged)
            return names, list(accumulate(merged[name] for name in names))

        return cls(
            male=table(KenyanNames.first_names_male, SwahiliNames.first_names_male, 0.15),
            female=table(KenyanNames.first_names_female, SwahiliNames.first_names_female, 0.15),
            family=table(KenyanNames.last_names, SwahiliNames.last_names, 0.15),
        )

    def draw(self, rng: random.Random, which: str) -> str:
        names, cumulative = getattr(self, which)
        return rng.choices(names, cum_weights=cumulative)[0]


def population(
    n_existing: int,
    n_incoming: int,
    seed: int = 7,
    new_share: float = 0.25,
    duplicate_share: float = 0.02,
    cht_dates: bool = False,
) -> Population:
    """Generate existing CHT people and an incoming EMR list with known truth.

    :param n_existing: existing people (CHT contacts).
    :param n_incoming: incoming rows, including ``duplicate_share`` rows that repeat a person.
    :param seed: fixes everything.
    :param new_share: share of incoming people who are truly new.
    :param duplicate_share: share of incoming rows that name someone a previous row names.
    :param cht_dates: CHT-form estimated dates and the list's year typos (the module docstring);
        off, the data is the benchmark's as it always was.
    """
    rng, dates = random.Random(seed), DateDraws.for_seed(seed, on=cht_dates)
    names = _Names.load()
    existing = _people(rng, names, n_existing, prefix="cht", dates=dates)
    n_repeats = int(n_incoming * duplicate_share)
    n_unique = n_incoming - n_repeats
    n_known = min(n_unique - round(n_unique * new_share), len(existing))
    n_new = n_unique - n_known
    chosen = rng.sample(existing, n_known)
    newcomers = _newcomers(rng, names, n_new, existing, dates)
    sources: list[tuple[Person, str | None]] = [(p, p.id) for p in chosen] + [(p, None) for p in newcomers]
    rng.shuffle(sources)
    rows = [(emr_version(person, rng, dates=dates), truth) for person, truth in sources]
    duplicates: dict[int, int] = {}
    for _ in range(n_repeats):
        position = rng.randrange(len(sources))
        person, truth = sources[position]
        duplicates[len(rows)] = position
        rows.append((emr_version(person, rng, dates=dates), truth))
    order = list(range(len(rows)))
    rng.shuffle(order)
    placed = {old: new for new, old in enumerate(order)}
    incoming, truth_by_id, ids = [], {}, {}
    for new_position, old_position in enumerate(order):
        row, truth = rows[old_position]
        row["id"] = ids[old_position] = f"emr-{new_position:06d}"
        incoming.append(Person(**row))
        truth_by_id[row["id"]] = truth
    same_as = {}
    for later, earlier in duplicates.items():
        first, second = sorted((placed[later], placed[earlier]))
        same_as[f"emr-{second:06d}"] = f"emr-{first:06d}"
    return Population(existing, incoming, truth_by_id, same_as)


def emr_version(
    person: Person, rng: random.Random, region: str = "KE", dates: DateDraws | None = None
) -> dict[str, Any]:
    """How an EMR might record ``person``: a row (``Person`` keyword arguments, no ``id``).

    Reusable by the demo to turn a seeded CHT person (``from_cht_person``) into an EMR row.
    ``dates`` draws the year typos (none without it, so the demo's lists stay as they were).
    """
    tokens = [*(person.given_name or "").split(), *(person.family_name or "").split()]
    tokens = [token.capitalize() for token in tokens]
    if len(tokens) >= 3 and rng.random() < 0.3:
        del tokens[rng.randrange(1, len(tokens) - 1)]  # middle name dropped
    if person.sex == "female" and len(tokens) >= 2 and rng.random() < 0.05:
        tokens[-1] = _any_surname(rng)  # married: a new family name
    if tokens and rng.random() < 0.12:
        index = rng.randrange(len(tokens))
        tokens[index] = _typo(tokens[index], rng)
    if len(tokens) >= 2 and rng.random() < 0.12:
        tokens = [tokens[-1], *tokens[:-1]]  # family name first
    given, family = (" ".join(tokens[:-1]), tokens[-1]) if len(tokens) > 1 else (" ".join(tokens), None)
    if rng.random() < 0.03:
        given, family = None, " ".join(tokens)  # everything in one column
    return {
        "given_name": given,
        "family_name": family,
        "sex": _emr_sex(person.sex, rng),
        "date_of_birth": _emr_date(
            dates.listed.get(person.id, person.date_of_birth) if dates else person.date_of_birth, rng, dates
        ),
        "phone": _emr_phone(person.phone, rng, region),
        "place": _emr_place(person, rng),
        "identifier": person.identifier if rng.random() < 0.5 else None,
    }


# --- existing people ---------------------------------------------------------------------------


def _people(rng: random.Random, names: _Names, n: int, prefix: str, dates: DateDraws) -> list[Person]:
    people: list[Person] = []
    chw_areas = [f"chw-{i:04d}" for i in range(max(1, n // 400))]
    household = 0
    while len(people) < n:
        household += 1
        chw = rng.choice(chw_areas)
        place = f"hh-{prefix}-{household:06d}"
        area = (place, chw, f"hc-{int(chw[4:]) // 10:03d}")
        people.extend(_household(rng, names, place, area, prefix, len(people), n - len(people), dates))
    return people[:n]


def _household(
    rng: random.Random,
    names: _Names,
    place: str,
    area: tuple[str, ...],
    prefix: str,
    start: int,
    room: int,
    dates: DateDraws,
) -> list[Person]:
    family = names.draw(rng, "family")
    size = min(room, rng.choice((1, 2, 2, 3, 3, 4, 4, 5, 6, 7)))
    shared_phone = _new_phone(rng)
    members: list[Person] = []
    for offset in range(size):
        sex = rng.choice(("male", "female"))
        adult = offset < 2
        person_id = f"{prefix}-{start + offset:07d}"
        born, estimated = dates.cht_form(person_id, *_birth_date(rng, adult), REFERENCE_DAY)
        surname = family if (offset == 0 or rng.random() < 0.6) else names.draw(rng, "family")
        members.append(
            Person(
                id=person_id,
                given_name=_given_names(rng, names, sex),
                family_name=surname,
                sex=sex,
                date_of_birth=born,
                date_of_birth_estimated=estimated,
                phone=_member_phone(rng, adult, shared_phone),
                place=place,
                area=area,
                identifier=f"{rng.randrange(10**7, 10**8)}" if adult and rng.random() < 0.2 else None,
            )
        )
    if size >= 3 and rng.random() < 0.03 and len(members) < room:
        members.append(_o_a_twin(members[-1], f"{prefix}-{start + size:07d}"))
        if members[-2].id in dates.listed:
            dates.listed[members[-1].id] = dates.listed[members[-2].id]
    return members


def _o_a_twin(child: Person, twin_id: str) -> Person:
    """A twin of the other sex named with the paired O-/A- Luo name: same day, phone and home."""
    male = child.sex == "female"
    pair = next(iter(O_A_PAIRS.items()))
    names = dict(O_A_PAIRS)
    given = child.given_name.split() if child.given_name else []
    local = next((n for n in given if n.capitalize() in names or n.capitalize() in names.values()), None)
    if local:
        flipped = {v.lower(): k.lower() for k, v in names.items()} | {k.lower(): v.lower() for k, v in names.items()}
        twin_given = " ".join(flipped.get(n, n) for n in given)
    else:
        twin_given = (pair[0] if male else pair[1]).lower()
    return Person(
        id=twin_id,
        given_name=twin_given,
        family_name=child.family_name,
        sex="male" if male else "female",
        date_of_birth=child.date_of_birth,
        date_of_birth_estimated=child.date_of_birth_estimated,
        phone=child.phone,
        place=child.place,
        area=child.area,
    )


def _given_names(rng: random.Random, names: _Names, sex: str) -> str:
    table = "male" if sex == "male" else "female"
    first = names.draw(rng, table)
    if rng.random() < 0.45:
        second = names.draw(rng, table)
        if second != first:
            return f"{first} {second}"
    return first


def _birth_date(rng: random.Random, adult: bool) -> tuple[str | None, date]:
    """The date CHT holds, and the true one."""
    age_days = rng.randrange(18 * 365, 75 * 365) if adult else rng.randrange(0, 18 * 365)
    born = REFERENCE_DAY - timedelta(days=age_days)
    roll = rng.random()
    if roll < 0.04:
        return None, born
    if roll < 0.14:
        return f"{born.year}-01-01", born  # only the year was known
    if roll < 0.19:
        return born.replace(day=15).isoformat(), born  # only the month was known
    if adult and roll < 0.25:
        return f"{born.year - born.year % 5}-01-01", born  # age heaping on 0 and 5
    return born.isoformat(), born


@dataclass
class DateDraws:
    """The date draws added after the rest (CHT-form estimates, year typos), from a generator seeded
    apart from the main one so that every other draw of a population stays as it was.

    ``listed`` keeps, for each person whose CHT date was written the form's way, the 1 January
    estimate a list copies instead (a list holds its own estimate of the age, not CHT's entry day).
    """

    rng: random.Random
    listed: dict[str, str] = field(default_factory=dict)
    form_share: float = CHT_FORM_SHARE
    typo_share: float = YEAR_TYPO_SHARE

    @classmethod
    def for_seed(cls, seed: int, on: bool = True) -> DateDraws:
        """The draws of population ``seed``; ``on`` False writes no CHT-form date and no typo, so
        the population is the one generated before these draws existed (they use their own
        generator: the main one draws exactly as then)."""
        if on:
            return cls(random.Random(f"dates-{seed}"))
        return cls(random.Random(f"dates-{seed}"), form_share=0.0, typo_share=0.0)

    def typo(self) -> bool:
        """Whether a copied date gets a year typo (:meth:`year_typo`)."""
        return self.rng.random() < self.typo_share

    def cht_form(
        self, person_id: str, iso: str | None, born: date, reference: date, share: float | None = None
    ) -> tuple[str | None, bool]:
        """A 1 January estimate ``iso`` of a person truly ``born``, rewritten as CHT's person form
        writes an age (``share`` of them); returns the date and whether it is flagged ``approx``.

        The form's ``dob_approx`` is ``add-date(today(), 0 - age_years, 0 - age_months)``: the
        entry day, ``age`` years back. The age is the one the estimate gives on an entry day within
        :data:`REGISTRATION_YEARS` before ``reference`` (a heaped year stays heaped), so the year
        written is the estimate's or, before the birthday, the next one.
        """
        share = self.form_share if share is None else share
        if iso is None or not iso.endswith("-01-01") or self.rng.random() >= share:
            return iso, False
        estimate = _years_back(born, born.year - int(iso[:4]))
        first = max(estimate + timedelta(days=1), reference - timedelta(days=365 * REGISTRATION_YEARS))
        if first >= reference:
            return iso, False
        entered = first + timedelta(days=self.rng.randrange((reference - first).days))
        age = entered.year - estimate.year - ((entered.month, entered.day) < (estimate.month, estimate.day))
        self.listed[person_id] = iso
        return _years_back(entered, age).isoformat(), True

    def year_typo(self, born: date, latest: int) -> date:
        """``born`` with one digit of its year keyed wrong (the last in three of four), not after ``latest``."""
        place = 1 if self.rng.random() < 0.75 else 10
        digit = born.year // place % 10
        choices = [d for d in range(10) if d != digit and born.year + (d - digit) * place <= latest]
        return _years_back(born, -(self.rng.choice(choices) - digit) * place) if choices else born


def _years_back(day: date, years: int) -> date:
    """``day`` ``years`` earlier (negative: later); 29 February becomes the 28th."""
    return day.replace(year=day.year - years, day=min(day.day, 28) if day.month == 2 else day.day)


def _new_phone(rng: random.Random) -> str:
    return f"+254{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**7):07d}"


def _member_phone(rng: random.Random, adult: bool, shared: str) -> str | None:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(_PLACEHOLDERS)
    if adult:
        return _new_phone(rng) if roll < 0.75 else (shared if roll < 0.9 else None)
    return shared if roll < 0.55 else None


# --- incoming people ---------------------------------------------------------------------------


def _newcomers(rng: random.Random, names: _Names, n: int, existing: list[Person], dates: DateDraws) -> list[Person]:
    """Truly new people; 40 % join an existing household (its phone, place and often surname)."""
    fresh = _people(rng, names, n, prefix="new", dates=dates)
    result = []
    for person in fresh:
        if existing and rng.random() < 0.4:
            relative = rng.choice(existing)
            result.append(
                Person(
                    id=person.id,
                    given_name=person.given_name,
                    family_name=relative.family_name if rng.random() < 0.6 else person.family_name,
                    sex=person.sex,
                    date_of_birth=person.date_of_birth,
                    date_of_birth_estimated=person.date_of_birth_estimated,
                    phone=relative.phone if rng.random() < 0.5 else person.phone,
                    place=relative.place,
                    area=relative.area,
                )
            )
        else:
            result.append(person)
    return result


def _any_surname(rng: random.Random) -> str:
    return rng.choice(list(KenyanNames.last_names))


def _typo(token: str, rng: random.Random) -> str:
    if len(token) < 4:
        return token
    i = rng.randrange(1, len(token) - 1)
    kind = rng.random()
    if kind < 0.3:
        return token[:i] + token[i + 1 :]  # letter dropped
    if kind < 0.55:
        return token[:i] + token[i + 1] + token[i] + token[i + 2 :]  # letters swapped
    if kind < 0.8:
        return token[:i] + rng.choice("aeioukmnrst") + token[i + 1 :]  # letter replaced
    return token[:i] + token[i] + token[i:]  # letter doubled (ssempala / sempala)


def _emr_sex(sex: str | None, rng: random.Random) -> str | None:
    roll = rng.random()
    if sex is None or roll < 0.05:
        return None
    if roll < 0.06:
        return "F" if sex == "male" else "M"  # recording error
    return sex[0].upper() if roll < 0.5 else sex  # "M"/"F" or "male"/"female"


def _emr_date(iso: str | None, rng: random.Random, dates: DateDraws | None = None) -> str | None:
    if iso is None:
        return None
    born = date.fromisoformat(iso)
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.11:
        return f"{born.year}-01-01"  # the EMR only holds an estimated year
    if roll < 0.15 and born.day <= 12 and born.day != born.month:
        return date(born.year, born.day, born.month).strftime("%d/%m/%Y")  # day and month swapped
    if roll < 0.19:
        return born.replace(day=min(28, max(1, born.day + rng.choice((-2, -1, 1, 2))))).isoformat()
    if roll < 0.25:
        shifted = born.year + rng.choice((-2, -1, 1, 2))
        return born.replace(year=shifted, day=min(born.day, 28)).isoformat()  # age re-estimated
    if roll < 0.28:
        shifted = born.year + rng.choice((-8, -5, -4, -3, 3, 4, 5, 8))
        return f"{shifted}-01-01"  # age guessed afresh, years off
    if dates is not None and dates.typo():
        return dates.year_typo(born, REFERENCE_DAY.year).isoformat()  # a digit of the year mis-keyed
    return born.strftime("%d/%m/%Y") if roll < 0.5 else iso


def _emr_phone(phone: str | None, rng: random.Random, region: str) -> str | None:
    if phone is None or not phone.startswith("+"):
        return phone if rng.random() < 0.5 else None
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.25:
        return _new_phone(rng)  # changed number, or a treatment supporter's
    national = phone[1 + len(COUNTRY_CODES.get(region, "254")) :]
    if roll < 0.29:
        i = rng.randrange(2, len(national))
        national = national[:i] + str((int(national[i]) + 1) % 10) + national[i + 1 :]  # one digit off
    code = COUNTRY_CODES.get(region, "254")
    formats = (
        f"0{national}",
        national,
        f"{code}{national}",
        f"+{code}{national}",
        f"00{code}{national}",
        f"{national}.0",
        f"0{national[:3]} {national[3:6]} {national[6:]}",
    )
    return rng.choice(formats)


def _emr_place(person: Person, rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.05:
        return f"chw-{rng.randrange(50):04d}"  # moved, or the EMR's village is not the CHT place
    if roll < 0.4:
        return person.place
    if roll < 0.7 and len(person.area) > 1:
        return person.area[1]  # the EMR knows the CHW area, not the household
    return None
