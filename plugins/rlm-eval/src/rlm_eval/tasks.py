"""Offline task generators for ``rlm eval``: S-NIAH, OOLONG (trec_coarse-like) and OOLONG-Pairs.

Everything is stdlib only and deterministic: each item is built from a
``random.Random`` seeded with ``(task, target_tokens, seed, index)``, and every
answer is known by construction (for ``oolong`` and ``pairs`` it is recomputed
from the per-line record kept in ``meta["labels"]``).  Contexts are sized with
:func:`approx_tokens` (4 characters per token).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import define, field

__all__ = [
    "CATEGORIES",
    "TASKS",
    "EvalItem",
    "approx_tokens",
    "generate",
    "parse_size",
]

TASKS: tuple[str, ...] = ("sniah", "oolong", "pairs")

#: The six TREC coarse classes, as written in questions and ``meta["labels"]``.
CATEGORIES: tuple[str, ...] = (
    "abbreviation",
    "entity",
    "description",
    "human being",
    "location",
    "numeric value",
)

_CHARS_PER_TOKEN = 4


@define(frozen=True, kw_only=True)
class EvalItem:
    """One benchmark item: a long context, a short question and the answer known by construction."""

    id: str
    task: str
    size: str
    target_tokens: int
    context: str
    question: str
    answer: Any
    kind: str
    meta: Mapping[str, Any] = field(factory=dict)


def approx_tokens(text: str) -> int:
    """Approximate token count: ``len(text) / 4`` rounded up.

    This is the 4-chars-per-token rule the generators size contexts with; real
    tokenizers differ, which the harness reports separately as measured tokens.
    """
    return -(-len(text) // _CHARS_PER_TOKEN)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_size(text: str) -> int:
    """Parse a context size in tokens: ``"8k"`` -> 8192, ``"1m"`` -> 1048576, ``"500"`` -> 500.

    ``k`` is 1024 and ``m`` is 1024 * 1024 (either case); a fraction is allowed
    with a suffix (``"1.5k"`` -> 1536).  Raises :class:`ValueError` otherwise.
    """
    match = _SIZE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: expected a positive token count such as '500', '8k', '32K' or '1m'"
        )
    number, suffix = match.groups()
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[suffix.lower()]
    if "." in number and not suffix:
        raise ValueError(f"invalid size {text!r}: a plain token count must be a whole number")
    value = int(float(number) * scale)
    if value <= 0:
        raise ValueError(f"invalid size {text!r}: the size must be positive")
    return value


def generate(task: str, *, size: str, n: int, seed: int) -> list[EvalItem]:
    """Generate ``n`` items of ``task`` at context length ``size``; deterministic for the arguments."""
    if task not in _GENERATORS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    target = parse_size(size)
    build = _GENERATORS[task]
    items = []
    for index in range(n):
        rng = random.Random(f"rlm-eval:{task}:{target}:{seed}:{index}")
        context, question, answer, kind, meta = build(rng, target, index, n)
        items.append(
            EvalItem(
                id=f"{task}-{size}-{index}",
                task=task,
                size=size,
                target_tokens=target,
                context=context,
                question=question,
                answer=answer,
                kind=kind,
                meta=meta,
            )
        )
    return items


# ---------------------------------------------------------------------------
# Sizing helper


def _fill(target_chars: int, make: Callable[[], str], sep_len: int, min_units: int = 0) -> list[str]:
    """Draw units from ``make`` until their joined length is as close as possible to ``target_chars``."""
    units: list[str] = []
    total = 0
    while True:
        unit = make()
        added = len(unit) + (sep_len if units else 0)
        if len(units) >= min_units and total + added > target_chars:
            # Keep the unit only if that lands closer to the target than stopping here.
            if total + added - target_chars < target_chars - total:
                units.append(unit)
            return units
        units.append(unit)
        total += added


# ---------------------------------------------------------------------------
# S-NIAH: filler prose with one needle

_NAMES = (
    "Alice", "Bernard", "Clara", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas",
    "Karen", "Louis", "Martha", "Nathan", "Olivia", "Peter", "Rosa", "Simon", "Teresa", "Victor",
    "Wendy", "Yusuf", "Amelia", "Oscar", "Helen", "Marcus",
)
_ADJS = (
    "quiet", "old", "narrow", "bright", "wooden", "crowded", "distant", "gentle", "heavy", "small",
    "broad", "dusty", "cold", "warm", "famous", "simple", "curious", "patient", "busy", "green",
    "rusty", "careful", "modest", "silent", "pale", "tall", "humble", "steady", "plain", "lively",
)
_NOUNS = (
    "bridge", "garden", "library", "market", "river", "village", "kitchen", "harbor", "meadow",
    "workshop", "station", "orchard", "factory", "tower", "cottage", "valley", "museum", "bakery",
    "school", "forest", "chapel", "warehouse", "lighthouse", "vineyard", "courtyard", "farmhouse",
)
_THINGS = (
    "letters", "baskets", "tools", "maps", "books", "lanterns", "blankets", "apples", "candles",
    "ropes", "boxes", "photographs", "paintings", "seeds", "coins", "shoes", "plates", "notebooks",
)
_VERBS = (
    "visited", "repaired", "painted", "cleaned", "described", "measured", "admired", "explored",
    "photographed", "sketched", "guarded", "rebuilt", "studied", "inspected", "decorated", "crossed",
)
_TIMES = (
    "in the morning", "after lunch", "late in the evening", "during the winter", "every spring",
    "before sunrise", "on a rainy afternoon", "at the end of summer", "once a week", "most days",
    "the following day", "for many years", "without much fuss", "when the weather cleared",
)
_ADVS = ("slowly", "quickly", "carefully", "quietly", "eagerly", "calmly", "happily", "patiently")
_FEELINGS = ("tired", "pleased", "surprised", "hopeful", "restless", "content", "amused", "thoughtful")
_WEATHER = (
    "The wind", "A light rain", "The fog", "A warm breeze", "The first snow", "The morning sun",
    "A sudden storm", "The evening mist",
)
_WEATHER_VERBS = (
    "drifted over", "settled on", "swept across", "lingered above", "passed through", "rolled over",
)

_FILLER_TEMPLATES: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"{r.choice(_NAMES)} {r.choice(_VERBS)} the {r.choice(_ADJS)} {r.choice(_NOUNS)} {r.choice(_TIMES)}.",
    lambda r: f"The {r.choice(_NOUNS)} near the {r.choice(_ADJS)} {r.choice(_NOUNS)} was {r.choice(_ADJS)} and {r.choice(_ADJS)}.",
    lambda r: f"{r.choice(_WEATHER)} {r.choice(_WEATHER_VERBS)} the {r.choice(_NOUNS)} {r.choice(_TIMES)}.",
    lambda r: f"Nobody remembered who had left the {r.choice(_THINGS)} in the {r.choice(_NOUNS)}.",
    lambda r: f"{r.choice(_NAMES)} and {r.choice(_NAMES)} {r.choice(_ADVS)} carried {r.choice(_THINGS)} to the {r.choice(_NOUNS)}.",
    lambda r: f"It was said that the {r.choice(_ADJS)} {r.choice(_NOUNS)} had once been a {r.choice(_NOUNS)}.",
    lambda r: f"{r.choice(_NAMES)} felt {r.choice(_FEELINGS)} after walking to the {r.choice(_NOUNS)} {r.choice(_TIMES)}.",
    lambda r: f"Some of the {r.choice(_THINGS)} in the {r.choice(_NOUNS)} were {r.choice(_ADJS)}, others were {r.choice(_ADJS)}.",
    lambda r: f"{r.choice(_NAMES)} wrote a short note about the {r.choice(_ADJS)} {r.choice(_NOUNS)} and put it away.",
    lambda r: f"On the road to the {r.choice(_NOUNS)}, {r.choice(_NAMES)} {r.choice(_ADVS)} counted the {r.choice(_THINGS)}.",
    lambda r: f"The path behind the {r.choice(_NOUNS)} led {r.choice(_ADVS)} down to a {r.choice(_ADJS)} {r.choice(_NOUNS)}.",
    lambda r: f"When asked about the {r.choice(_THINGS)}, {r.choice(_NAMES)} only smiled and looked at the {r.choice(_NOUNS)}.",
    lambda r: f"Everyone agreed that the {r.choice(_NOUNS)} looked {r.choice(_ADJS)} {r.choice(_TIMES)}.",
    lambda r: f"{r.choice(_NAMES)} {r.choice(_ADVS)} sorted the {r.choice(_THINGS)} while {r.choice(_NAMES)} {r.choice(_VERBS)} the {r.choice(_NOUNS)}.",
)

# Needle vocabularies: disjoint from the filler word lists above.
_KEY_ADJS = (
    "amber", "cobalt", "crimson", "emerald", "golden", "indigo", "ivory", "jade", "lilac",
    "maroon", "obsidian", "saffron", "scarlet", "silver", "topaz", "violet",
)
_KEY_NOUNS = (
    "falcon", "compass", "lantern", "harpsichord", "glacier", "sparrow", "trombone", "beacon",
    "pelican", "anchor", "comet", "kettle", "walrus", "thimble", "canyon", "otter",
)
_VALUE_WORDS = (
    "zeppelin", "marmalade", "quasar", "origami", "kaleidoscope", "tarantula", "xylophone",
    "periwinkle", "gondola", "saxophone", "labyrinth", "avalanche", "chameleon", "mandolin",
    "pinwheel", "tangerine", "accordion", "iceberg", "nebula", "porcupine", "hurricane", "juniper",
)
_NEEDLE_TYPES = ("numbers", "words", "uuids")


def _needle_value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "words":
        return rng.choice(_VALUE_WORDS)
    raw = f"{rng.getrandbits(128):032x}"
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _sniah(rng: random.Random, target: int, index: int, n: int) -> tuple[str, str, Any, str, dict[str, Any]]:
    kind = rng.choice(_NEEDLE_TYPES)
    key = f"{rng.choice(_KEY_ADJS)} {rng.choice(_KEY_NOUNS)}"
    value = _needle_value(rng, kind)
    needle = f"One of the special magic {kind} for {key} is: {value}."
    depth = index / (n - 1) if n > 1 else 0.5

    target_chars = target * _CHARS_PER_TOKEN
    budget = max(0, target_chars - len(needle) - 1)

    def sentence() -> str:
        return rng.choice(_FILLER_TEMPLATES)(rng)

    sentences = _fill(budget, sentence, 1)
    # Insert the needle at the sentence boundary closest to the requested depth.
    filler_len = sum(len(s) + 1 for s in sentences)
    goal = depth * filler_len
    offset = 0
    pos = len(sentences)
    for i, s in enumerate(sentences):
        if offset >= goal:
            pos = i
            break
        offset += len(s) + 1
    units = [*sentences[:pos], needle, *sentences[pos:]]
    # Paragraph breaks every few sentences keep the prose readable (same length as a space).
    parts: list[str] = []
    run = 0
    para_len = rng.randint(4, 8)
    for i, unit in enumerate(units):
        if i:
            run += 1
            if run >= para_len:
                parts.append("\n")
                run = 0
                para_len = rng.randint(4, 8)
            else:
                parts.append(" ")
        parts.append(unit)
    context = "".join(parts)
    needle_at = context.index(needle)
    question = (
        f"What is the special magic {kind} for {key} mentioned in the context? Answer with the value only."
    )
    meta = {
        "depth": depth,
        "needle_position": needle_at / max(1, len(context)),
        "needle_type": kind,
        "key": key,
        "needle": needle,
    }
    return context, question, value, "exact", meta


# ---------------------------------------------------------------------------
# OOLONG-like lines: dated, per-user TREC-coarse questions

_ABBRS = (
    "NASA", "UNESCO", "SCUBA", "LASER", "RADAR", "NATO", "UNICEF", "HTML", "DNA", "FBI", "AIDS",
    "OPEC", "CPU", "GPS", "ATM", "PIN", "CEO", "URL", "WHO", "IMF", "BBC", "ISBN", "RSVP", "MRI",
)
_ORGS = (
    "World Health Organization", "International Monetary Fund", "European Union",
    "United Nations", "Federal Aviation Administration", "World Trade Organization",
    "Central Intelligence Agency", "National Football League", "International Space Station",
)
_COUNTRIES = (
    "France", "Peru", "Kenya", "Norway", "Vietnam", "Chile", "Egypt", "Canada", "Poland", "Ghana",
    "Japan", "Brazil", "Portugal", "Nepal", "Mexico", "Austria", "Morocco", "Sweden", "Bolivia",
    "Turkey", "Hungary", "Thailand", "Argentina", "Finland",
)
_CITIES = (
    "Lisbon", "Nairobi", "Oslo", "Hanoi", "Santiago", "Cairo", "Toronto", "Krakow", "Accra",
    "Osaka", "Recife", "Porto", "Kathmandu", "Vienna", "Marrakesh", "Gothenburg", "Istanbul",
    "Budapest", "Bangkok", "Helsinki", "Lima", "Chicago", "Melbourne", "Munich",
)
_LANDMARKS = (
    "Eiffel Tower", "Golden Gate Bridge", "Leaning Tower of Pisa", "Taj Mahal", "Colosseum",
    "Statue of Liberty", "Sydney Opera House", "Great Wall", "Brandenburg Gate", "Alhambra",
    "Machu Picchu", "Parthenon", "Space Needle", "CN Tower", "Hagia Sophia", "Tower Bridge",
)
_ANIMALS = (
    "elephant", "giraffe", "penguin", "dolphin", "tiger", "koala", "camel", "moose", "zebra",
    "polar bear", "hippopotamus", "kangaroo", "gorilla", "blue whale", "ostrich", "bison",
)
_INVENTIONS = (
    "telephone", "light bulb", "printing press", "steam engine", "radio", "television",
    "telescope", "microscope", "airplane", "bicycle", "sewing machine", "typewriter",
    "phonograph", "safety pin", "zipper", "ballpoint pen", "refrigerator", "stethoscope",
)
_BOOKS = (
    "Pride and Prejudice", "War and Peace", "Moby Dick", "The Odyssey", "Don Quixote",
    "Great Expectations", "The Trial", "Middlemarch", "Madame Bovary", "Crime and Punishment",
    "Jane Eyre", "The Divine Comedy", "Frankenstein", "Dracula", "Ulysses", "Hamlet",
)
_FEATS = (
    "climb Mount Everest", "walk on the moon", "fly across the Atlantic alone",
    "reach the South Pole", "swim the English Channel", "sail around the world",
    "run a mile in under four minutes", "split the atom", "win two Nobel Prizes",
)
_OFFICES = ("president", "prime minister", "king", "queen", "chancellor", "foreign minister")
_CONCEPTS = (
    "photosynthesis", "inflation", "a black hole", "plate tectonics", "osmosis", "democracy",
    "a sonnet", "the greenhouse effect", "a haiku", "entropy", "a solar eclipse", "metabolism",
    "a recession", "irony", "a monsoon", "an allergy", "a placebo", "erosion",
)
_PHENOMENA = (
    "leaves change color in autumn", "cats purr", "onions make people cry", "the seas have tides",
    "birds migrate south", "stars twinkle", "ships float on water", "people yawn",
    "bread rise in the oven", "bees dance", "volcanoes erupt", "knuckles crack",
)
_DEVICES = (
    "refrigerator", "compass", "microwave oven", "jet engine", "thermostat", "barometer",
    "vaccine", "solar panel", "hearing aid", "hydraulic press", "smoke detector", "sundial",
)
_DIFF_PAIRS = (
    ("weather", "climate"), ("a virus", "a bacterium"), ("a lake", "a pond"),
    ("a crocodile", "an alligator"), ("speed", "velocity"), ("a simile", "a metaphor"),
    ("a comet", "an asteroid"), ("baking soda", "baking powder"), ("a turtle", "a tortoise"),
)
_NATIONAL_THINGS = ("flower", "dish", "sport", "animal", "bird", "tree", "instrument", "drink")
_HABITATS = ("Arctic", "Sahara", "Amazon rainforest", "Great Barrier Reef", "Andes", "Gobi Desert")
_SPORTS = ("tennis", "cricket", "rugby", "baseball", "fencing", "polo", "curling", "lacrosse")
_EVENTS = (
    "Battle of Hastings", "signing of the Magna Carta", "first modern Olympic Games",
    "Boston Tea Party", "Congress of Vienna", "Woodstock festival", "Treaty of Westphalia",
)
_RIVER_CITIES = ("Paris", "London", "Cairo", "Budapest", "Vienna", "Prague", "Baghdad", "Cologne")
_COUNT_THINGS = (
    "islands", "time zones", "official languages", "states", "provinces", "active volcanoes",
    "national parks", "bones", "keys", "moons", "players", "squares",
)
_COUNT_PLACES = (
    "Indonesia", "Russia", "Switzerland", "the United States", "Canada", "Iceland",
    "a human hand", "a piano", "Jupiter", "a rugby team", "a chessboard", "Japan",
)


def _q_abbreviation(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"What does {r.choice(_ABBRS)} stand for?",
            lambda: f"What is the full form of the abbreviation {r.choice(_ABBRS)}?",
            lambda: f"What is {r.choice(_ABBRS)} an abbreviation for?",
            lambda: f"What is the abbreviation for the {r.choice(_ORGS)}?",
            lambda: f"What is the acronym used for the {r.choice(_ORGS)}?",
        )
    )()


def _q_entity(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"What is the national {r.choice(_NATIONAL_THINGS)} of {r.choice(_COUNTRIES)}?",
            lambda: f"What colors appear on the flag of {r.choice(_COUNTRIES)}?",
            lambda: f"What kind of animal lives in the {r.choice(_HABITATS)} and hunts at night?",
            lambda: f"What food does the {r.choice(_ANIMALS)} usually eat?",
            lambda: f"What instrument is traditionally played in {r.choice(_COUNTRIES)}?",
            lambda: f"What equipment do you need to play {r.choice(_SPORTS)}?",
            lambda: f"What breed of dog was first raised in {r.choice(_COUNTRIES)}?",
        )
    )()


def _q_description(r: random.Random) -> str:
    def diff() -> str:
        a, b = r.choice(_DIFF_PAIRS)
        return f"What is the difference between {a} and {b}?"

    return r.choice(
        (
            lambda: f"What is {r.choice(_CONCEPTS)}?",
            lambda: f"Why do {r.choice(_PHENOMENA)}?",
            lambda: f"How does a {r.choice(_DEVICES)} work?",
            diff,
            lambda: f"Can you explain what {r.choice(_CONCEPTS)} means?",
            lambda: f"How do you play {r.choice(_SPORTS)}?",
        )
    )()


def _q_human(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"Who invented the {r.choice(_INVENTIONS)}?",
            lambda: f"Who wrote {r.choice(_BOOKS)}?",
            lambda: f"Who was the first person to {r.choice(_FEATS)}?",
            lambda: f"Who was the first {r.choice(_OFFICES)} of {r.choice(_COUNTRIES)}?",
            lambda: f"Who designed the {r.choice(_LANDMARKS)}?",
            lambda: f"Which composer wrote the national anthem of {r.choice(_COUNTRIES)}?",
        )
    )()


def _q_location(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"Where is the {r.choice(_LANDMARKS)} located?",
            lambda: f"Which country borders {r.choice(_COUNTRIES)} to the north?",
            lambda: f"What is the capital of {r.choice(_COUNTRIES)}?",
            lambda: f"Where did the {r.choice(_EVENTS)} take place?",
            lambda: f"Which river flows through {r.choice(_RIVER_CITIES)}?",
            lambda: f"In which country is the city of {r.choice(_CITIES)}?",
        )
    )()


def _q_numeric(r: random.Random) -> str:
    def distance() -> str:
        a, b = r.sample(_CITIES, 2)
        return f"How far is {a} from {b}?"

    return r.choice(
        (
            lambda: f"How many {r.choice(_COUNT_THINGS)} are there in {r.choice(_COUNT_PLACES)}?",
            lambda: f"How tall is the {r.choice(_LANDMARKS)}?",
            distance,
            lambda: f"In what year was the {r.choice(_INVENTIONS)} invented?",
            lambda: f"How much does an adult {r.choice(_ANIMALS)} weigh?",
            lambda: f"What is the population of {r.choice(_CITIES)}?",
            lambda: f"How long does the {r.choice(_ANIMALS)} usually live?",
        )
    )()


_QUESTION_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "abbreviation": _q_abbreviation,
    "entity": _q_entity,
    "description": _q_description,
    "human being": _q_human,
    "location": _q_location,
    "numeric value": _q_numeric,
}

_PREAMBLE = (
    "Each line of the context has a date, a user id and an instance. Each instance is a question "
    "that belongs to exactly one of 6 categories: abbreviation, entity, description, human being, "
    "location, numeric value. The category (its label) is not written; infer it from the question. "
)

def _line(date: str, user: int, sentence: str) -> str:
    return f"Date: {date} || User: {user} || Instance: {sentence}"


def _make_lines(
    rng: random.Random,
    target: int,
    users: Sequence[int],
    pick: Callable[[int], str],
    min_lines: int,
) -> tuple[list[str], list[tuple[int, str, str]]]:
    """Lines of ``Date || User || Instance`` filling ``target`` tokens, with their (user, date, category)."""
    start = datetime.date(2022, 1, 1) + datetime.timedelta(days=rng.randrange(730))
    labels: list[tuple[int, str, str]] = []

    def make() -> str:
        user = rng.choice(users)
        date = (start + datetime.timedelta(days=rng.randrange(365))).isoformat()
        category = pick(user)
        labels.append((user, date, category))
        return _line(date, user, _QUESTION_MAKERS[category](rng))

    lines = _fill(target * _CHARS_PER_TOKEN, make, 1, min_units=min_lines)
    return lines, labels[: len(lines)]


def _counts(labels: Sequence[tuple[int, str, str]]) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for _, _, category in labels:
        counts[category] += 1
    return counts


def _oolong(rng: random.Random, target: int, index: int, n: int) -> tuple[str, str, Any, str, dict[str, Any]]:
    est_lines = max(1, target * _CHARS_PER_TOKEN // 75)
    n_users = min(200, max(5, est_lines // 10))
    users = sorted(rng.sample(range(10_000, 100_000), n_users))
    weights = [rng.uniform(0.3, 2.0) for _ in CATEGORIES]
    lines, labels = _make_lines(
        rng, target, users, lambda _user: rng.choices(CATEGORIES, weights)[0], min_lines=12
    )
    counts = _counts(labels)
    dates = sorted({d for _, d, _ in labels})

    qtypes = ["count", "count_user", "count_dates", "most_common", "least_common", "compare"]
    rng.shuffle(qtypes)
    params: dict[str, Any]
    for qtype in qtypes:
        params = {}
        ranked = sorted(counts.values())
        if qtype == "count":
            category = rng.choice(CATEGORIES)
            params = {"category": category}
            question = f"How many instances are labelled {category}? Answer with a number only."
            answer, kind = counts[category], "number"
        elif qtype == "count_user":
            user, _, category = rng.choice(labels)
            params = {"category": category, "user": user}
            answer = sum(1 for u, _, c in labels if u == user and c == category)
            question = (
                f"How many instances from user {user} are labelled {category}? Answer with a number only."
            )
            kind = "number"
        elif qtype == "count_dates":
            category = rng.choice(CATEGORIES)
            i = rng.randrange(len(dates))
            j = min(len(dates) - 1, i + rng.randrange(max(1, len(dates) // 2)))
            lo, hi = dates[i], dates[j]
            params = {"category": category, "from": lo, "to": hi}
            answer = sum(1 for _, d, c in labels if c == category and lo <= d <= hi)
            question = (
                f"How many instances dated from {lo} to {hi} (inclusive) are labelled {category}? "
                "Answer with a number only."
            )
            kind = "number"
        elif qtype == "most_common":
            if ranked[-1] == ranked[-2]:
                continue
            answer = max(CATEGORIES, key=counts.__getitem__)
            question = "Which category is the most common among the instances? Answer with the category name only."
            kind = "exact"
        elif qtype == "least_common":
            if ranked[0] == ranked[1]:
                continue
            answer = min(CATEGORIES, key=counts.__getitem__)
            question = "Which category is the least common among the instances? Answer with the category name only."
            kind = "exact"
        else:  # compare
            options = [(a, b) for a in CATEGORIES for b in CATEGORIES if a != b and counts[a] != counts[b]]
            if not options:
                continue
            a, b = rng.choice(options)
            params = {"first": a, "second": b}
            answer = "yes" if counts[a] > counts[b] else "no"
            question = f"Is '{a}' more common than '{b}' among the instances? Answer yes or no."
            kind = "exact"
        meta = {"question_type": qtype, "params": params, "counts": counts, "labels": labels, "users": users}
        return "\n".join(lines), _PREAMBLE + question, answer, kind, meta
    raise AssertionError("unreachable: the 'count' question is always available")  # pragma: no cover


# ---------------------------------------------------------------------------
# OOLONG-Pairs: fewer users, each with a restricted set of categories


def _pair_answer(users: Sequence[int], has: Mapping[int, set[str]], qtype: str, c1: str, c2: str) -> list[list[int]]:
    out = []
    for i, a in enumerate(users):
        for b in users[i + 1 :]:
            ha, hb = has[a], has[b]
            if qtype == "both":
                ok = c1 in ha and c1 in hb
            elif qtype == "cross":
                ok = (c1 in ha and c2 in hb) or (c2 in ha and c1 in hb)
            elif qtype == "both_either":
                ok = bool({c1, c2} & ha) and bool({c1, c2} & hb)
            else:  # both_all
                ok = {c1, c2} <= ha and {c1, c2} <= hb
            if ok:
                out.append([a, b] if a < b else [b, a])
    return sorted(out)


def _pairs_question(qtype: str, c1: str, c2: str) -> str:
    head = "List every pair of user ids (a, b) with a < b such that "
    tail = " Answer with one pair per line as 'a,b' and nothing else."
    if qtype == "both":
        cond = f"both users have at least one instance labelled {c1}."
    elif qtype == "cross":
        cond = (
            f"one of the two users has at least one instance labelled {c1} and the other has at least "
            f"one instance labelled {c2}."
        )
    elif qtype == "both_either":
        cond = f"both users have at least one instance labelled {c1} or {c2}."
    else:
        cond = f"both users have at least one instance labelled {c1} and at least one labelled {c2}."
    return head + cond + tail


def _pairs(rng: random.Random, target: int, index: int, n: int) -> tuple[str, str, Any, str, dict[str, Any]]:
    est_lines = max(1, target * _CHARS_PER_TOKEN // 75)
    n_users = min(40, max(10, est_lines // 8))
    qtypes = ("both", "cross", "both_either", "both_all")
    for _attempt in range(100):
        users = sorted(rng.sample(range(1, 10_000), n_users))
        allowed = {u: rng.sample(CATEGORIES, rng.randint(1, 3)) for u in users}
        lines, labels = _make_lines(rng, target, users, lambda u, allowed=allowed: rng.choice(allowed[u]), min_lines=4 * n_users)
        has: dict[int, set[str]] = {u: set() for u in users}
        for u, _, c in labels:
            has[u].add(c)
        if not all(has.values()):
            continue  # every user must appear in the context; redraw
        total = n_users * (n_users - 1) // 2
        for _try in range(40):
            qtype = rng.choice(qtypes)
            c1, c2 = rng.sample(CATEGORIES, 2)
            answer = _pair_answer(users, has, qtype, c1, c2)
            # Non-empty, not every pair, and at most half of them so answers stay short.
            if 0 < len(answer) <= total // 2:
                meta = {
                    "question_type": qtype,
                    "params": {"first": c1, "second": c2},
                    "counts": _counts(labels),
                    "labels": labels,
                    "users": users,
                }
                return "\n".join(lines), _PREAMBLE + _pairs_question(qtype, c1, c2), answer, "pairs", meta
    raise RuntimeError("could not build a pairs item with a non-trivial answer")  # pragma: no cover


_GENERATORS: dict[str, Callable[[random.Random, int, int, int], tuple[str, str, Any, str, dict[str, Any]]]] = {
    "sniah": _sniah,
    "oolong": _oolong,
    "pairs": _pairs,
}
