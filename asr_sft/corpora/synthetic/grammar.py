"""The probabilistic English grammar behind `asr_sft.sentences.generate_sentences`.

`Grammar(rng, vocabulary).sentence()` draws one sentence from weighted templates (statements,
questions, subordinate and relative clauses, conditionals, lists, imperatives, numbers, travel),
filling them with words from an `asr_sft.sentences.Vocabulary` and numbers, dates and clock times
spelled out by asr_sft.sentences. Every choice comes from `rng`, in a fixed order: any change here
that alters what a seed produces must bump `asr_sft.sentences.GRAMMAR_VERSION`.
"""

from __future__ import annotations

import random

from asr_sft.corpora.synthetic.sentences import (DAYS, MONTHS, Verb, Vocabulary, number_to_words, ordinal_to_words, time_to_words,
                               year_to_words)

# Which adjective lists suit which noun section.
_ADJECTIVES_FOR = {"person": ("person", "any"), "animal": ("person", "any"), "thing": ("thing", "any"),
                   "food": ("thing",), "mass": ("thing",), "place": ("thing", "any"),
                   "event": ("event",), "abstract": ("abstract",)}  # fmt: skip
_OBJECT_NOUNS = {"thing": ("thing", "thing", "food", "mass"), "idea": ("abstract",)}
_TENSES = ("past", "present", "progressive", "past_progressive", "future", "going_to", "perfect", "modal")
_TENSE_WEIGHTS = (4, 2, 1, 1, 2, 1, 1.5, 1.5)
_VERB_KINDS = ("thing", "person", "idea", "intransitive", "motion")
_VERB_KIND_WEIGHTS = (5, 3, 2, 2, 2)
_PRONOUNS = (("I", "1s"), ("you", "2"), ("he", "3s"), ("she", "3s"), ("we", "1p"), ("they", "3p"))
_OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
_MODALS = {"can": "can't", "could": "couldn't", "should": "shouldn't", "would": "wouldn't",
           "might": "might not", "must": "must not"}  # fmt: skip
_PLACE_PREPOSITIONS = ("in", "in", "at", "near", "behind", "outside", "beside", "next to", "close to", "far from")
_STREETS = ("Street", "Road", "Lane", "Avenue", "Square")


class Grammar:
    """One sentence per call to `sentence()`; every choice comes from `rng`."""

    def __init__(self, rng: random.Random, vocab: Vocabulary):
        self.rng = rng
        self.v = vocab

    def pick(self, options):
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def sentence(self) -> str:
        templates, weights = zip(*_TEMPLATES)
        text, end = self.rng.choices(templates, weights)[0](self)
        text = " ".join(text.split()).replace(" ,", ",")
        return text[0].upper() + text[1:] + end

    # words and phrases
    def name(self) -> str:
        given = self.pick(self.v.names[self.pick(("female", "male"))])
        return f"{given} {self.pick(self.v.names['surname'])}" if self.chance(0.2) else given

    def adjective(self, kind: str) -> str:
        return self.pick(self.v.adjectives[self.pick(_ADJECTIVES_FOR[kind])])

    def noun_phrase(self, kind: str, plural: bool | None = None) -> str:
        noun = self.pick(self.v.nouns[kind])
        countable = kind != "mass"
        plural = countable and (self.chance(0.35) if plural is None else plural)
        words = [noun.plural if plural else noun.singular]
        roll = self.rng.random()
        if roll < 0.4:
            words.insert(0, self.adjective(kind))
        elif roll < 0.47:
            first, second = self.adjective(kind), self.adjective(kind)
            words[:0] = [first] if first == second else [first, second]
        return f"{self.determiner(plural, countable, words[0])} {' '.join(words)}"

    def determiner(self, plural: bool, countable: bool, next_word: str) -> str:
        if not countable:
            return self.pick(("the", "the", "some", "this", "my", "our", "their", "a little"))
        if plural:
            return self.pick(("the", "the", "some", "these", "those", "many", "a few", "several", "my",
                              "our", "their", "her", "his", "all the", self.count(2, 12)))  # fmt: skip
        return self.pick(("the", "the", "the", _article(next_word), _article(next_word), "this", "that",
                          "my", "your", "his", "her", "our", "their", "every"))  # fmt: skip

    def count(self, low: int, high: int) -> str:
        return number_to_words(self.rng.randint(low, high))

    def subject(self) -> tuple[str, str]:
        """(words, person) where person is 1s, 2, 3s, 1p or 3p, for agreement."""
        roll = self.rng.random()
        if roll < 0.3:
            return self.name(), "3s"
        if roll < 0.38:
            return f"{self.name()} and {self.name()}", "3p"
        if roll < 0.62:
            plural = self.chance(0.3)
            return self.noun_phrase("person", plural), "3p" if plural else "3s"
        if roll < 0.72:
            plural = self.chance(0.3)
            return self.noun_phrase("animal", plural), "3p" if plural else "3s"
        return self.pick(_PRONOUNS)

    def place(self) -> str:
        roll = self.rng.random()
        if roll < 0.2:
            return f"in {self.pick(self.v.places['city'])}"
        if roll < 0.25:
            return f"in {self.pick(self.v.places['country'])}"
        return f"{self.pick(_PLACE_PREPOSITIONS)} {self.noun_phrase('place', False)}"

    def destination(self) -> str:
        roll = self.rng.random()
        if roll < 0.25:
            return f"to {self.pick(self.v.places['city'])}"
        if roll < 0.3:
            return "home"
        if roll < 0.38:
            cities = self.v.places["city"]
            return f"from {self.pick(cities)} to {self.pick(cities)}"
        preposition = self.pick(("to", "to", "into", "across", "through", "along", "towards", "around", "past"))
        return f"{preposition} {self.noun_phrase('place', False)}"

    def time(self, tense: str) -> str:
        day, month = self.pick(DAYS), self.pick(MONTHS)
        part = self.pick(("morning", "afternoon", "evening", "night"))
        clock = time_to_words(self.rng.randint(1, 12), 5 * self.rng.randint(0, 11), self.chance(0.5))
        event = self.noun_phrase("event", False)
        common = [f"at {clock}", f"after {event}", f"before {event}", f"on {day} {part}"]
        if tense in ("past", "past_progressive"):
            return self.pick(common + ["yesterday", f"last {day}", f"last {month}", f"in {month}",
                                       f"{self.count(2, 12)} {self.pick(('days', 'weeks', 'years'))} ago",
                                       f"in {year_to_words(self.rng.randint(1900, 2030))}",
                                       f"during {event}", "the day before yesterday", "last night"])  # fmt: skip
        if tense in ("future", "going_to"):
            return self.pick(common + ["tomorrow", f"next {day}", f"next {month}", "tomorrow morning",
                                       f"in {self.count(2, 20)} minutes", "later today", "soon"])  # fmt: skip
        if tense == "present":
            return self.pick([f"every {day}", f"every {part}", f"on {day}s", f"in the {part}",
                              "at weekends", "once a week", "twice a month", f"every {month}"])  # fmt: skip
        return self.pick(common[:1] + ["now", "today", "this week", "at the moment", "again"])

    def verb(self, kind: str | None = None) -> tuple[Verb, str]:
        kind = kind or self.rng.choices(_VERB_KINDS, _VERB_KIND_WEIGHTS)[0]
        return self.pick(self.v.verbs[kind]), kind

    def complement(self, kind: str) -> str:
        if kind in _OBJECT_NOUNS:
            if kind == "idea" and self.chance(0.15):
                return f"{self.name()}'s {self.pick(self.v.nouns['abstract']).singular}"
            return self.noun_phrase(self.pick(_OBJECT_NOUNS[kind]))
        if kind == "person":
            roll = self.rng.random()
            return self.name() if roll < 0.35 else self.pick(_OBJECT_PRONOUNS) if roll < 0.6 else self.noun_phrase("person")
        if kind == "motion":
            return self.destination()
        return ""

    def verb_group(self, verb: Verb, person: str, tense: str, negative: bool = False) -> str:
        short = self.chance(0.5)  # contraction: didn't / did not
        third = person == "3s"
        be_now = {"1s": "am", "3s": "is"}.get(person, "are")
        be_then = "was" if person in ("1s", "3s") else "were"
        if tense == "past":
            return ("didn't" if short else "did not") + f" {verb.base}" if negative else verb.past
        if tense == "present":
            if negative:
                aux = "does" if third else "do"
                return (f"{aux}n't" if short else f"{aux} not") + f" {verb.base}"
            adverb = f"{self.pick(self.v.adverbs['frequency'])} " if self.chance(0.3) else ""
            return adverb + (verb.third if third else verb.base)
        if tense in ("progressive", "past_progressive"):
            be = be_now if tense == "progressive" else be_then
            if negative:
                be = f"{be} not" if not short or be == "am" else f"{be}n't"
            return f"{be} {verb.gerund}"
        if tense in ("future", "going_to"):
            if tense == "going_to":
                return f"{be_now}{' not' if negative else ''} going to {verb.base}"
            return ("won't" if short else "will not") + f" {verb.base}" if negative else f"will {verb.base}"
        if tense == "perfect":
            have = "has" if third else "have"
            return (f"{have}n't" if short else f"{have} not") + f" {verb.participle}" if negative else f"{have} {verb.participle}"
        modal = self.pick(list(_MODALS))
        return (_MODALS[modal] if short else f"{modal} not") + f" {verb.base}" if negative else f"{modal} {verb.base}"

    def clause(self, tense: str | None = None, negative: float = 0.12, adjuncts: bool = True) -> str:
        tense = tense or self.rng.choices(_TENSES, _TENSE_WEIGHTS)[0]
        subject, person = self.subject()
        verb, kind = self.verb()
        words = [subject, self.verb_group(verb, person, tense, self.chance(negative)), self.complement(kind)]
        if adjuncts:
            words += self.adjuncts(tense)
        return " ".join(words)

    def adjuncts(self, tense: str) -> list[str]:
        words = []
        if self.chance(0.3):
            words.append(self.place())
        if self.chance(0.3):
            words.append(self.time(tense))
        if self.chance(0.15):
            words.append(self.pick(self.v.adverbs["manner"]))
        return words


# Templates: each returns (words, final punctuation).
def _statement(g: Grammar) -> tuple[str, str]:
    tense = g.rng.choices(_TENSES, _TENSE_WEIGHTS)[0]
    if g.chance(0.25):
        return f"{g.time(tense)}, {g.clause(tense, adjuncts=False)} {' '.join(g.adjuncts(tense)[:1])}", "."
    return g.clause(tense), "."


def _yes_no_question(g: Grammar) -> tuple[str, str]:
    subject, person = g.subject()
    verb, kind = g.verb()
    third, roll = person == "3s", g.rng.random()
    if roll < 0.3:
        head, tense = f"did {subject} {verb.base}", "past"
    elif roll < 0.45:
        head, tense = f"{'does' if third else 'do'} {subject} {verb.base}", "present"
    elif roll < 0.6:
        head, tense = f"will {subject} {verb.base}", "future"
    elif roll < 0.72:
        head, tense = f"{'has' if third else 'have'} {subject} ever {verb.participle}", "perfect"
    elif roll < 0.85:
        head, tense = f"{g.pick(('can', 'could', 'should', 'would'))} {subject} {verb.base}", "modal"
    else:
        be = {"1s": "am", "3s": "is"}.get(person, "are")
        head, tense = f"{be} {subject} {verb.gerund}", "progressive"
    return f"{head} {g.complement(kind)} {' '.join(g.adjuncts(tense)[:2])}", "?"


def _wh_question(g: Grammar) -> tuple[str, str]:
    subject, person = g.subject()
    roll = g.rng.random()
    if roll < 0.35:
        verb, kind = g.verb()
        word = g.pick(("where", "when", "why", "how", "how often"))
        return f"{word} did {subject} {verb.base} {g.complement(kind)}", "?"
    if roll < 0.5:
        verb = g.pick(g.v.verbs["thing"])
        aux = g.pick(("did", "will", "can", "should"))
        return f"what {aux} {subject} {verb.base} {g.place()}", "?"
    if roll < 0.65:
        verb, kind = g.verb()
        return f"who {verb.past} {g.complement(kind)} {g.time('past')}", "?"
    if roll < 0.8:
        noun = g.pick(g.v.nouns[g.pick(("thing", "food", "animal"))]).plural
        verb = g.pick(g.v.verbs["thing"] if g.chance(0.7) else g.v.verbs["person"])
        return f"how many {noun} did {subject} {verb.base} {g.time('past')}", "?"
    noun = g.pick(g.v.nouns[g.pick(("thing", "place", "abstract"))]).singular
    verb = g.pick(g.v.verbs["thing"] + g.v.verbs["idea"])
    return f"which {noun} {'does' if person == '3s' else 'do'} {subject} {verb.base}", "?"


def _complex(g: Grammar) -> tuple[str, str]:
    conjunction = g.pick(("when", "because", "although", "after", "before", "while", "since", "as soon as", "until"))
    inner_tense = "past_progressive" if conjunction == "while" else "past"
    inner = g.clause(inner_tense, adjuncts=g.chance(0.4))
    outer = g.clause(g.pick(("past", "past", "past_progressive")), adjuncts=False)
    if g.chance(0.5):
        return f"{conjunction} {inner}, {outer}", "."
    return f"{outer} {conjunction} {inner}", "."


def _reported(g: Grammar) -> tuple[str, str]:
    speaker = g.pick((g.name(), g.noun_phrase("person", False), "everyone", "nobody", "my mother", "the teacher"))
    roll = g.rng.random()
    if roll < 0.35:
        verb = g.pick(("said", "thought", "knew", "believed", "explained", "remembered", "told us", "wrote"))
        return f"{speaker} {verb} that {g.clause('past')}", "."
    if roll < 0.55:
        verb = g.pick(("asked", "wondered", "wanted to know", "did not know"))
        return f"{speaker} {verb} {g.pick(('whether', 'if', 'why', 'where', 'how'))} {g.clause('past')}", "."
    if roll < 0.8:
        opener = g.pick(("I think", "I hope", "we believe", "they say", "it seems", "I doubt", "I'm sure", "it's likely"))
        return f"{opener} that {g.clause(g.pick(('present', 'future', 'perfect', 'going_to')))}", "."
    return f"{speaker} hoped that {g.clause('modal')}", "."


def _relative(g: Grammar) -> tuple[str, str]:
    if g.chance(0.5):
        plural = g.chance(0.3)
        kind = g.pick(("person", "person", "animal"))
        head = g.noun_phrase(kind, plural)
        person = "3p" if plural else "3s"
        verb, verb_kind = g.verb()
        tense = g.pick(("past", "present"))
        inner = f"{g.verb_group(verb, person, tense)} {g.complement(verb_kind)}"
        pronoun = "who" if kind == "person" else "that"
        main_verb, main_kind, main_tense = *g.verb(), g.pick(("past", "future", "perfect"))
        outer = f"{g.verb_group(main_verb, person, main_tense)} {g.complement(main_kind)}"
        return f"{head} {pronoun} {inner} {outer} {' '.join(g.adjuncts(main_tense)[:1])}", "."
    subject, person = g.subject()
    verb = g.pick(g.v.verbs["thing"])
    other_subject, _ = g.subject()
    thing = g.noun_phrase(g.pick(("thing", "food")))
    inner_verb = g.pick(g.v.verbs["thing"])
    return f"{subject} {g.verb_group(verb, person, 'past')} {thing} that {other_subject} {inner_verb.past}", "."


def _listing(g: Grammar) -> tuple[str, str]:
    subject, person = g.subject()
    if g.chance(0.55):
        verb = g.pick(g.v.verbs["thing"])
        items = [g.noun_phrase(g.pick(("thing", "food", "mass"))) for _ in range(g.rng.randint(3, 4))]
        head = g.verb_group(verb, person, g.pick(("past", "future", "going_to")))
        return f"{subject} {head} {_join(items, g.chance(0.5))} {g.place() if g.chance(0.4) else ''}", "."
    actions = []
    for _ in range(g.rng.randint(2, 3)):
        verb, kind = g.verb(g.pick(("thing", "thing", "person", "idea", "motion")))
        actions.append(f"{verb.past} {g.complement(kind)}")
    return f"{subject} {_join(actions, g.chance(0.5))} {g.time('past') if g.chance(0.4) else ''}", "."


def _numbers(g: Grammar) -> tuple[str, str]:
    city, name = g.pick(g.v.places["city"]), g.name()
    roll = g.rng.randint(0, 9)
    if roll == 0:
        noun = g.pick(g.v.nouns[g.pick(("person", "animal", "thing", "food"))]).plural
        return f"there were {g.count(2, 999)} {noun} {g.place()} {g.time('past')}", "."
    if roll == 1:
        currency, small = g.pick((("pounds", "pence"), ("dollars", "cents"), ("euros", "cents")))
        cents = f" and {g.count(1, 99)} {small}" if g.chance(0.5) else ""
        thing = g.noun_phrase(g.pick(("thing", "food")), False)
        return f"{name} paid {g.count(2, 999)} {currency}{cents} for {thing}", "."
    if roll == 2:
        return f"{name} was born in {city} in {year_to_words(g.rng.randint(1900, 2024))}", "."
    if roll == 3:
        clock = time_to_words(g.rng.randint(1, 12), 5 * g.rng.randint(0, 11), g.chance(0.5))
        return f"the {g.pick(('train', 'bus', 'ferry', 'flight'))} to {city} leaves at {clock} {g.time('future')}", "."
    if roll == 4:
        event = g.noun_phrase("event", False)
        return f"{event} will take place on the {ordinal_to_words(g.rng.randint(1, 31))} of {g.pick(MONTHS)}", "."
    if roll == 5:
        street = f"{g.pick(g.v.names['surname'])} {g.pick(_STREETS)}"
        return f"{name} lives at number {g.count(1, 300)} {street} in {city}", "."
    if roll == 6:
        return f"{city} is about {g.count(3, 900)} {g.pick(('miles', 'kilometers'))} from {g.pick(g.v.places['city'])}", "."
    if roll == 7:
        return f"{g.noun_phrase('person', False)} will be {g.count(2, 99)} years old {g.time('future')}", "."
    if roll == 8:
        return f"the final score was {g.count(0, 9)} to {g.count(0, 9)} after {g.noun_phrase('event', False)}", "."
    unit = g.pick(("kilograms", "pounds", "meters", "feet", "liters"))
    return f"{g.noun_phrase('thing', False)} {g.pick(('weighs', 'measures'))} {g.count(2, 99)} {unit}", "."


def _imperative(g: Grammar) -> tuple[str, str]:
    verb, kind = g.verb(g.pick(("thing", "thing", "person", "idea", "motion")))
    action = f"{verb.base} {g.complement(kind)}"
    opener = g.pick(("please", "don't", "never", "remember to", "try to", "let's", "you must", "don't forget to"))
    extra = g.pick((g.place(), g.time("future"), g.pick(g.v.adverbs["manner"]), ""))
    return f"{opener} {action} {extra}", g.pick((".", ".", "!"))


def _description(g: Grammar) -> tuple[str, str]:
    kind = g.pick(("thing", "place", "person", "animal", "food"))
    thing, roll = g.noun_phrase(kind, False), g.rng.random()
    if roll < 0.3:
        verb = g.pick(("was", "is", "looked", "seemed", "felt"))
        return f"{thing} {verb} {g.adjective(kind)} and {g.adjective(kind)}", "."
    if roll < 0.5:
        return f"it was a {g.adjective('event')} {g.pick(g.v.nouns['event']).singular} in {g.pick(g.v.places['city'])}", "."
    if roll < 0.7:
        other = g.pick(g.v.nouns[kind]).singular
        return f"{thing} was as {g.adjective(kind)} as {_article(other)} {other}", "."
    if roll < 0.85:
        noun = g.pick(g.v.nouns[kind]).singular
        adjective = g.adjective(kind)
        return f"there {g.pick(('is', 'was'))} {_article(adjective)} {adjective} {noun} {g.place()}", "."
    adjective, noun = g.adjective(kind), g.pick(g.v.nouns[kind]).singular
    return f"what {_article(adjective)} {adjective} {noun} {g.pick(('this is', 'that was', 'you have'))}", "!"


def _travel(g: Grammar) -> tuple[str, str]:
    cities, countries, name = g.v.places["city"], g.v.places["country"], g.name()
    roll = g.rng.randint(0, 5)
    if roll == 0:
        how = g.pick(("flew", "drove", "traveled", "took the train", "sailed", "cycled"))
        return f"{name} {how} from {g.pick(cities)} to {g.pick(cities)} on {g.pick(DAYS)}", "."
    if roll == 1:
        return f"we spent {g.count(2, 20)} {g.pick(('days', 'weeks'))} in {g.pick(countries)} {g.time('past')}", "."
    if roll == 2:
        return f"{name} has never been to {g.pick(cities + countries)}", "."
    if roll == 3:
        return f"have you ever {g.pick(('visited', 'lived in', 'worked in'))} {g.pick(cities + countries)}", "?"
    if roll == 4:
        return f"{g.noun_phrase('person', False)} moved to {g.pick(cities)} in {year_to_words(g.rng.randint(1920, 2024))}", "."
    return f"the road from {g.pick(cities)} to {g.pick(cities)} was {g.adjective('thing')} and {g.adjective('thing')}", "."


def _conditional(g: Grammar) -> tuple[str, str]:
    if g.chance(0.6):
        condition = g.clause("present", negative=0.2, adjuncts=False)
        if g.chance(0.2):
            condition = f"it {g.pick(('rains', 'snows'))} {g.time('future')}"
        result = g.clause(g.pick(("future", "future", "modal")), adjuncts=g.chance(0.3))
    else:
        condition = g.clause("past", negative=0.2, adjuncts=False)
        subject, person = g.subject()
        verb, kind = g.verb()
        result = f"{subject} would {verb.base} {g.complement(kind)}"
    if g.chance(0.6):
        return f"if {condition}, {result}", "."
    return f"{result} if {condition}", "."


def _join(items: list[str], oxford_comma: bool) -> str:
    """['a', 'b', 'c'] -> 'a, b, and c' (or 'a, b and c')."""
    head = ", ".join(items[:-1])
    return f"{head}{',' if oxford_comma and len(items) > 2 else ''} and {items[-1]}"


def _article(word: str) -> str:
    """'a' or 'an' by the sound of the next word (spelling, with the usual exceptions)."""
    lower = word.lower()
    if lower.startswith(("hour", "honest", "honor", "heir")):
        return "an"
    if lower.startswith(("uni", "use", "usu", "eu", "one", "once")):
        return "a"
    return "an" if lower[:1] in "aeiou" else "a"


_TEMPLATES = (
    (_statement, 5), (_yes_no_question, 2), (_wh_question, 2), (_complex, 3), (_reported, 2),
    (_relative, 2), (_listing, 2), (_numbers, 2.5), (_imperative, 1.5), (_description, 1.5),
    (_travel, 1.5), (_conditional, 1.2),
)  # fmt: skip
