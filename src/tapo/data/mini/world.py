"""The fictional TAPO-mini world: entities with attributes and relations, and their encyclopedia passages.

Each split (train / validation / test) gets its own sub-world: its entities only relate to entities of the same
split, so every question built from a sub-world names only that split's entities and the splits are disjoint by
entity by construction. The corpus holds every sub-world, as a real search index would.

Attributes are data, not code: an ``Attribute`` says how the fact reads in the passage, how a question asks for it,
and (for relations) which kind of entity it points to. Questions and passages are both rendered from it, so a
question can only ask for what a passage states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tapo.data.arith import REFERENCE_YEAR
from tapo.data.mini.names import NameForge

KINDS = ("person", "city", "company", "river", "mountain")
OCCUPATIONS = (
    "painter",
    "merchant",
    "poet",
    "sailor",
    "physician",
    "composer",
    "weaver",
    "chemist",
    "banker",
    "potter",
)
INDUSTRIES = ("shipbuilding", "textiles", "mining", "printing", "brewing", "glassmaking", "railways", "pottery")
COMPANY_SUFFIXES = ("Dynamics", "Works", "Industries", "Holdings", "Foundry", "Trading", "Mills", "Shipping")


@dataclass(frozen=True)
class Attribute:
    """One fact type of one entity kind.

    ``sentence`` renders the fact into the passage (``{name}``, ``{value}``); ``questions`` ask for it about ``{x}``,
    a reference to the entity (its name, or a relation phrase in a multi-hop question). A relation has a ``target``
    kind and a ``phrase`` naming the related entity ("the founder of {x}"). Numeric facts have ``quantity`` ("the
    population of {x}") for arithmetic questions; year facts have ``verb`` ("founded") for "years before" questions.
    """

    kind: str
    name: str
    sentence: str
    questions: tuple[str, ...]
    target: str | None = None
    phrase: str = ""
    quantity: str = ""
    verb: str = ""

    @property
    def numeric(self) -> bool:
        return bool(self.quantity or self.verb)

    def fact(self, x: str) -> str:
        """How reasoning names this fact of ``x``: "the birth year of Ann Lee", "the founder of Zorvex Works",
        "the occupation of Ann Lee" (what a demonstration says it looks for and found)."""
        return (self.phrase or self.quantity or f"the {self.name} of {{x}}").format(x=x)


def _attributes() -> dict[str, tuple[Attribute, ...]]:
    a = Attribute
    rows = (
        a(
            "person",
            "occupation",
            "{name} was a {value}.",
            ("What was the occupation of {x}?", "What did {x} work as?"),
        ),
        a(
            "person",
            "born",
            "{name} was born in {value}.",
            ("In what year was {x} born?", "When was {x} born?", "What is the birth year of {x}?"),
            quantity="the birth year of {x}",
            verb="born",
        ),
        a(
            "person",
            "birthplace",
            "{name} grew up in the city of {value}.",
            ("In which city did {x} grow up?", "Which city was home to {x} as a child?"),
            target="city",
            phrase="the city where {x} grew up",
        ),
        a("city", "intro", "{name} is a city.", ()),
        a(
            "city",
            "population",
            "{name} has a population of {value}.",
            ("What is the population of {x}?", "How many people live in {x}?"),
            quantity="the population of {x}",
        ),
        a(
            "city",
            "founded",
            "{name} was founded in {value}.",
            ("When was {x} founded?", "In what year was {x} founded?"),
            quantity="the founding year of {x}",
            verb="founded",
        ),
        a(
            "city",
            "area",
            "{name} covers an area of {value} square kilometres.",
            ("What is the area of {x} in square kilometres?", "How many square kilometres does {x} cover?"),
            quantity="the area of {x} in square kilometres",
        ),
        a("company", "industry", "{name} is a {value} company.", ("In which industry does {x} operate?",)),
        a(
            "company",
            "founded",
            "{name} was established in {value}.",
            ("When was {x} established?", "In what year was {x} established?"),
            quantity="the year {x} was established",
            verb="established",
        ),
        a(
            "company",
            "founder",
            "{name} was started by {value}.",
            ("Who started {x}?", "Who was the founder of {x}?"),
            target="person",
            phrase="the founder of {x}",
        ),
        a(
            "company",
            "headquarters",
            "{name} has its headquarters in {value}.",
            ("Where does {x} have its headquarters?", "In which city is {x} headquartered?"),
            target="city",
            phrase="the city where {x} has its headquarters",
        ),
        a(
            "company",
            "employees",
            "{name} employs {value} people.",
            ("How many employees does {x} have?", "How many people work for {x}?"),
            quantity="the number of employees of {x}",
        ),
        a("river", "intro", "The {name} is a river.", ()),
        a(
            "river",
            "length",
            "The {name} is {value} kilometres long.",
            ("How long is {x} in kilometres?", "What is the length of {x} in kilometres?"),
            quantity="the length of {x} in kilometres",
        ),
        a(
            "river",
            "mouth",
            "The {name} reaches the sea at {value}.",
            ("At which city does {x} reach the sea?", "Where does {x} reach the sea?"),
            target="city",
            phrase="the city where {x} reaches the sea",
        ),
        a("mountain", "intro", "{name} is a mountain.", ()),
        a(
            "mountain",
            "height",
            "{name} rises {value} metres above sea level.",
            ("How high is {x} in metres?", "What is the height of {x} in metres?"),
            quantity="the height of {x} in metres",
        ),
        a(
            "mountain",
            "first_ascent",
            "{name} was first climbed in {value}.",
            ("In what year was {x} first climbed?", "When was {x} first climbed?"),
            quantity="the year {x} was first climbed",
            verb="first climbed",
        ),
        a(
            "mountain",
            "first_climber",
            "The first ascent of {name} was made by {value}.",
            ("Who first climbed {x}?", "Who made the first ascent of {x}?"),
            target="person",
            phrase="the first person to climb {x}",
        ),
        a(
            "mountain",
            "near",
            "{name} stands near the city of {value}.",
            ("Near which city does {x} stand?", "Which city lies near {x}?"),
            target="city",
            phrase="the city near {x}",
        ),
    )
    by_kind: dict[str, tuple[Attribute, ...]] = {}
    for row in rows:
        by_kind[row.kind] = (*by_kind.get(row.kind, ()), row)
    return by_kind


ATTRIBUTES = _attributes()


def askable(kind: str) -> tuple[Attribute, ...]:
    """The attributes of ``kind`` a question can ask for (the intro sentence is not a fact)."""
    return tuple(attribute for attribute in ATTRIBUTES[kind] if attribute.questions)


@dataclass
class Entity:
    """One thing in the world. ``facts`` maps an attribute name to its value; a relation's value is a name."""

    id: str
    kind: str
    name: str
    split: str
    facts: dict[str, int | str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How a sentence refers to the entity ("the Quonx River", but "Zorvex Dynamics")."""
        return f"the {self.name}" if self.kind == "river" else self.name

    def passage(self) -> dict[str, str]:
        """The encyclopedia passage: title = name, one plain sentence per fact."""
        sentences = [
            attribute.sentence.format(name=self.name, value=self.facts.get(attribute.name, ""))
            for attribute in ATTRIBUTES[self.kind]
        ]
        return {"id": self.id, "title": self.name, "text": " ".join(sentences)}


@dataclass(frozen=True)
class WorldSizes:
    """Entities per kind in one sub-world."""

    person: int
    city: int
    company: int
    river: int
    mountain: int

    @classmethod
    def for_questions(cls, questions: int) -> WorldSizes:
        """Enough entities that each one is asked about only a few times (about 2 questions per entity)."""

        def scaled(fraction: float, floor: int) -> int:
            return max(floor, round(questions * fraction))

        return cls(
            person=scaled(0.10, 6),
            city=scaled(0.05, 5),
            company=scaled(0.07, 5),
            river=scaled(0.025, 3),
            mountain=scaled(0.025, 3),
        )


class WorldBuilder:
    """Creates entities for the sub-worlds of all splits from one random stream and one name forge."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._names = NameForge(rng)
        self.entities: list[Entity] = []

    def _new(self, kind: str, name: str, split: str) -> Entity:
        entity = Entity(id=f"mini-{len(self.entities) + 1:05d}", kind=kind, name=name, split=split)
        self.entities.append(entity)
        return entity

    def sub_world(self, split: str, sizes: WorldSizes) -> dict[str, list[Entity]]:
        """Create one split's entities, wire their relations inside the split, and return them by kind."""
        rng, names = self._rng, self._names
        people = [self._new("person", f"{names.word((1, 2))} {names.word()}", split) for _ in range(sizes.person)]
        cities = [self._new("city", names.word(), split) for _ in range(sizes.city)]
        companies = [
            self._new("company", f"{names.word()} {rng.choice(COMPANY_SUFFIXES)}", split) for _ in range(sizes.company)
        ]
        rivers = [self._new("river", f"{names.word()} River", split) for _ in range(sizes.river)]
        mountains = [self._new("mountain", f"Mount {names.word()}", split) for _ in range(sizes.mountain)]
        for person in people:
            person.facts.update(
                occupation=rng.choice(OCCUPATIONS), born=rng.randint(1760, 1960), birthplace=rng.choice(cities).name
            )
        for city in cities:
            city.facts.update(
                population=rng.randint(2_000, 3_500_000), founded=rng.randint(600, 1850), area=rng.randint(12, 2_400)
            )
        born = {person.name: int(person.facts["born"]) for person in people}
        for company in companies:
            founder = rng.choice(people)
            company.facts.update(
                industry=rng.choice(INDUSTRIES),
                founded=min(REFERENCE_YEAR - 1, born[founder.name] + rng.randint(20, 60)),
                founder=founder.name,
                headquarters=rng.choice(cities).name,
                employees=rng.randint(40, 95_000),
            )
        for river in rivers:
            river.facts.update(length=rng.randint(35, 3_200), mouth=rng.choice(cities).name)
        for mountain in mountains:
            climber = rng.choice(people)
            mountain.facts.update(
                height=rng.randint(900, 8_400),
                first_ascent=min(REFERENCE_YEAR - 1, born[climber.name] + rng.randint(18, 50)),
                first_climber=climber.name,
                near=rng.choice(cities).name,
            )
        return {"person": people, "city": cities, "company": companies, "river": rivers, "mountain": mountains}
