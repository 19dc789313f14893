"""TAPO-mini question generators, one per kind, each returning the question with its oracle plan.

A plan is what an oracle does to answer: search steps (query = the entity's name, with the attribute read, the fact
in words and its value) and code steps (plain Python that prints the answer; values found earlier are written into
it). The gold answer is what the last code step prints, computed by evaluating that same expression, so a plan can
never disagree with its gold. Levels follow one rule: ``hard`` when the question needs two or more tool calls or a
two-operation computation, ``easy`` otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tapo.data.arith import REFERENCE_YEAR, apportion, evaluate
from tapo.data.mini.oracle_plan import CodeStep, OraclePlan, PlanStep, SearchStep
from tapo.data.mini.world import ATTRIBUTES, Attribute, Entity, askable

KIND_MIX = {"single_hop": 0.25, "multi_hop": 0.15, "code": 0.20, "search_code": 0.20, "no_tool": 0.20}
NEEDS = {
    "single_hop": ["search"],
    "multi_hop": ["search"],
    "code": ["code"],
    "search_code": ["search", "code"],
    "no_tool": [],
}
ABILITY = {
    "single_hop": "fact-reasoning",
    "multi_hop": "fact-reasoning",
    "code": "calculation",
    "search_code": "fact-calculation",
    "no_tool": "general",
}

_EASY_CODE = (
    ("What is {a} multiplied by {b}?", "{a} * {b}"),
    ("Compute {a} * {b}.", "{a} * {b}"),
    ("What is the product of {a} and {b}?", "{a} * {b}"),
    ("What is {a} divided by {b}, rounded to two decimal places?", "round({a} / {b}, 2)"),
)
_HARD_CODE = (
    ("What is {a} * {b} - {c}?", "{a} * {b} - {c}"),
    ("What is ({a} + {c}) * {b}?", "({a} + {c}) * {b}"),
    ("What is the remainder when {a} * {b} is divided by {c}?", "{a} * {b} % {c}"),
)
_TRIVIAL = (
    ("What is {a} + {b}?", "{a} + {b}"),
    ("What is {a} plus {b}?", "{a} + {b}"),
    ("What is the sum of {a} and {b}?", "{a} + {b}"),
    ("What is {a} - {b}?", "{a} - {b}"),
    ("What is {a} minus {b}?", "{a} - {b}"),
    ("What is {a} take away {b}?", "{a} - {b}"),
    ("What is {a} times {b}?", "{a} * {b}"),
    ("What is {a} * {b}?", "{a} * {b}"),
)
_TRIVIAL_MAX = 15
_YEAR_OPS = (
    ("How many years before {year} was {x} {verb}?", "{year} - {v}"),
    ("How many years had passed by {year} since {x} was {verb}?", "{year} - {v}"),
)
_QUANTITY_OPS = (
    ("What do you get if you multiply {q} by {k}?", "{v} * {k}"),
    ("What is {q} divided by {k}, rounded to two decimal places?", "round({v} / {k}, 2)"),
    ("What is the square of {q}?", "{v} ** 2"),
)
_PAIR_OPS = (
    ("What is the sum of {qa} and {qb}?", "{va} + {vb}"),
    ("What is the difference between {qa} and {qb}?", "{va} - {vb}"),
    ("What is {qa} divided by {qb}, rounded to two decimal places?", "round({va} / {vb}, 2)"),
)
COMMON_KNOWLEDGE: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("What is the capital of France?", "Which city is the capital of France?"), ("Paris",)),
    (("What is the capital of Japan?", "Which city is the capital of Japan?"), ("Tokyo",)),
    (("What is the capital of Italy?", "Which city is the capital of Italy?"), ("Rome",)),
    (("What is the capital of Germany?", "Which city is the capital of Germany?"), ("Berlin",)),
    (("What is the capital of Spain?", "Which city is the capital of Spain?"), ("Madrid",)),
    (("What is the capital of Egypt?", "Which city is the capital of Egypt?"), ("Cairo",)),
    (("What is the capital of Russia?", "Which city is the capital of Russia?"), ("Moscow",)),
    (("What is the capital of the United Kingdom?", "Which city is the capital of England?"), ("London",)),
    (("What is the capital of China?", "Which city is the capital of China?"), ("Beijing",)),
    (("What is the capital of Greece?", "Which city is the capital of Greece?"), ("Athens",)),
    (("What is the capital of Portugal?", "Which city is the capital of Portugal?"), ("Lisbon",)),
    (("What is the capital of Austria?", "Which city is the capital of Austria?"), ("Vienna",)),
    (("How many days are in a week?", "How many days does a week have?"), ("7",)),
    (("How many months are in a year?", "How many months does a year have?"), ("12",)),
    (("How many legs does a spider have?", "How many legs do spiders have?"), ("8",)),
    (("How many legs does a dog have?", "How many legs do dogs have?"), ("4",)),
    (("How many hours are in a day?", "How many hours does a day have?"), ("24",)),
    (("How many minutes are in an hour?", "How many minutes does an hour have?"), ("60",)),
    (("How many sides does a triangle have?", "How many sides do triangles have?"), ("3",)),
    (("How many sides does a hexagon have?", "How many sides do hexagons have?"), ("6",)),
    (("What colour is the sky on a clear day?", "What color is a clear daytime sky?"), ("blue",)),
    (("What colour is fresh grass?", "What color is grass?"), ("green",)),
    (("On which planet do humans live?", "What is the name of the planet we live on?"), ("Earth",)),
    (("What is the largest ocean on Earth?", "Which ocean is the largest?"), ("Pacific", "Pacific Ocean")),
    (("At how many degrees Celsius does water freeze?", "What is the freezing point of water in Celsius?"), ("0",)),
    (("At how many degrees Celsius does water boil?", "What is the boiling point of water in Celsius?"), ("100",)),
    (("How many letters are in the English alphabet?", "How many letters does the English alphabet have?"), ("26",)),
    (("Who wrote Romeo and Juliet?", "Who is the author of Romeo and Juliet?"), ("William Shakespeare", "Shakespeare")),
    (("Who was the first president of the United States?", "Who was the first US president?"), ("George Washington",)),
    (("How many wheels does a bicycle have?", "How many wheels do bicycles have?"), ("2",)),
    (("What is the opposite of hot?", "What word means the opposite of hot?"), ("cold",)),
    (("How many days are in a leap year?", "How many days does a leap year have?"), ("366",)),
)


@dataclass
class Draft:
    """A question before it gets an id and a split."""

    question: str
    golds: list[str]
    kind: str
    level: str
    entities: list[str] = field(default_factory=list)
    plan: list[PlanStep] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "needs": list(NEEDS[self.kind]),
            "entities": self.entities,
            "plan": OraclePlan(tuple(self.plan)).to_meta(),
            "answer": self.golds[0],
        }


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _search(entity: Entity, attribute: str) -> SearchStep:
    """A search step: the query (the entity's name), the fact it is for, in words, and the value it finds."""
    fact = next(a for a in ATTRIBUTES[entity.kind] if a.name == attribute).fact(entity.ref)
    return SearchStep(query=entity.name, attribute=attribute, fact=fact, value=str(entity.facts[attribute]))


def _code(expression: str) -> tuple[CodeStep, str]:
    """A code step printing ``expression`` and its output; the expression is built here from integers only."""
    output = evaluate(expression)
    return CodeStep(code=f"print({expression})", output=output), output


class QuestionMaker:
    """Draws questions of each kind from one split's sub-world."""

    def __init__(self, rng: random.Random, world: dict[str, list[Entity]], common: list[int]) -> None:
        self.rng = rng
        self.world = world
        self.by_name = {entity.name: entity for entities in world.values() for entity in entities}
        self.common = common  # indices into COMMON_KNOWLEDGE reserved for this split
        self.makers: dict[str, Callable[[], Draft]] = {
            "single_hop": self.single_hop,
            "multi_hop": self.multi_hop,
            "code": self.code,
            "search_code": self.search_code,
            "no_tool": self.no_tool,
        }

    def _entity(self, kinds: tuple[str, ...] | None = None) -> Entity:
        kind = self.rng.choice(kinds or tuple(self.world))
        return self.rng.choice(self.world[kind])

    def _hop(self, numeric: bool) -> tuple[Entity, Attribute, Entity]:
        """A relation from a random entity to its target, whose target kind has (numeric) attributes."""
        relations = [
            attribute
            for attributes in ATTRIBUTES.values()
            for attribute in attributes
            if attribute.target and (not numeric or any(a.numeric for a in askable(attribute.target)))
        ]
        relation = self.rng.choice(relations)
        source = self.rng.choice(self.world[relation.kind])
        return source, relation, self.by_name[str(source.facts[relation.name])]

    def single_hop(self) -> Draft:
        entity = self._entity()
        attribute = self.rng.choice(askable(entity.kind))
        question = self.rng.choice(attribute.questions).format(x=entity.ref)
        value = str(entity.facts[attribute.name])
        return Draft(
            _sentence(question), [value], "single_hop", "easy", [entity.name], [_search(entity, attribute.name)]
        )

    def multi_hop(self) -> Draft:
        source, relation, target = self._hop(numeric=False)
        attribute = self.rng.choice(askable(target.kind))
        reference = relation.phrase.format(x=source.ref)
        question = self.rng.choice(attribute.questions).format(x=reference)
        plan = [_search(source, relation.name), _search(target, attribute.name)]
        value = str(target.facts[attribute.name])
        return Draft(_sentence(question), [value], "multi_hop", "hard", [source.name, target.name], plan)

    def code(self) -> Draft:
        hard = self.rng.random() < 0.5
        template, expression = self.rng.choice(_HARD_CODE if hard else _EASY_CODE)
        values = {"a": self.rng.randint(1000, 9999), "b": self.rng.randint(100, 999), "c": self.rng.randint(100, 9999)}
        step, output = _code(expression.format(**values))
        return Draft(template.format(**values), [output], "code", "hard" if hard else "easy", [], [step])

    def _operation(self, entity: Entity, attribute: Attribute, reference: str) -> tuple[str, str]:
        """A one-entity computation on a numeric fact: (question, expression)."""
        value = entity.facts[attribute.name]
        if attribute.verb:
            template, expression = self.rng.choice(_YEAR_OPS)
            fields = {"year": REFERENCE_YEAR, "x": reference, "verb": attribute.verb, "v": value}
        else:
            template, expression = self.rng.choice(_QUANTITY_OPS)
            fields = {"q": attribute.quantity.format(x=reference), "k": self.rng.randint(11, 97), "v": value}
        return template.format(**fields), expression.format(**fields)

    def search_code(self) -> Draft:
        mode = self.rng.choice(("one", "one", "chain", "pair"))  # half easy (one search), half hard (two)
        if mode == "one":
            entity = self._entity()
            attribute = self.rng.choice([a for a in askable(entity.kind) if a.numeric])
            question, expression = self._operation(entity, attribute, entity.ref)
            searches, entities = [_search(entity, attribute.name)], [entity.name]
        elif mode == "chain":
            source, relation, target = self._hop(numeric=True)
            attribute = self.rng.choice([a for a in askable(target.kind) if a.numeric])
            question, expression = self._operation(target, attribute, relation.phrase.format(x=source.ref))
            searches = [_search(source, relation.name), _search(target, attribute.name)]
            entities = [source.name, target.name]
        else:
            kind = self.rng.choice([k for k in self.world if len(self.world[k]) >= 2])
            first, second = self.rng.sample(self.world[kind], 2)
            attribute = self.rng.choice([a for a in askable(kind) if a.numeric])
            if first.facts[attribute.name] < second.facts[attribute.name]:
                first, second = second, first
            # years only differ meaningfully: their sum or ratio means nothing
            template, pair_expression = self.rng.choice(_PAIR_OPS[1:2] if attribute.verb else _PAIR_OPS)
            fields = {
                "qa": attribute.quantity.format(x=first.ref),
                "qb": attribute.quantity.format(x=second.ref),
                "va": first.facts[attribute.name],
                "vb": second.facts[attribute.name],
            }
            question, expression = template.format(**fields), pair_expression.format(**fields)
            searches = [_search(first, attribute.name), _search(second, attribute.name)]
            entities = [first.name, second.name]
        step, output = _code(expression)
        level = "easy" if len(searches) == 1 else "hard"
        return Draft(_sentence(question), [output], "search_code", level, entities, [*searches, step])

    def no_tool(self) -> Draft:
        if self.common and self.rng.random() < 0.4:
            phrasings, golds = COMMON_KNOWLEDGE[self.rng.choice(self.common)]
            return Draft(self.rng.choice(phrasings), list(golds), "no_tool", "easy")
        template, expression = self.rng.choice(_TRIVIAL)
        a, b = sorted((self.rng.randint(1, _TRIVIAL_MAX), self.rng.randint(1, _TRIVIAL_MAX)), reverse=True)
        _, output = _code(expression.format(a=a, b=b))
        return Draft(template.format(a=a, b=b), [output], "no_tool", "easy")


def kind_counts(total: int) -> dict[str, int]:
    """Split ``total`` questions over ``KIND_MIX`` so the counts add up exactly."""
    return apportion(total, KIND_MIX)
