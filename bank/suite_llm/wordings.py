"""How people ask for each generative task: wordings per family and op, written by hand for that family.

Each wording set has TRAIN wordings (one becomes a task's description, the others its paraphrases) and HELDOUT
wordings that no training text ever uses (the held-out-paraphrase evaluation). Styles vary on purpose: imperative,
question, terse, arrow notation, long with the format spelled out, and with an example inline. Slots:

    {lang}   the language or locale as a person names it ("Portuguese", "US English");
    {what}   the op's phrase inside the family (e.g. "month" or "day of the week");
    {x} {y}  one example input and its output, taken from the task's training split.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WordingSet:
    """Wordings for one kind of request, and the phrase each op puts into the {what} slot."""

    what: dict[str, str]
    train: tuple[str, ...]
    heldout: tuple[str, ...]


DATE_NAME = WordingSet(
    what={"month": "month", "weekday": "day of the week"},
    train=(
        "Give the {lang} name of the {what} in this date. Answer with the name only.",
        "Which {what} is it? Read the English date and reply with the {lang} word for it, nothing else.",
        "{lang} name of the {what}, from an English date.",
        "You get a date written out in English, like 'Tuesday, 14 March 2021'. Translate just its {what} into "
        "{lang} and output that one word, spelled the way {lang} spells it (accents included).",
        "Example: '{x}' -> '{y}'. Do the same for the next date: the {what} in {lang}.",
        "English date -> {what} in {lang}",
        "What is the {what} of this date called in {lang}? Just the word, please.",
    ),
    heldout=(
        "Take the English date and answer with the name of its {what} as {lang} speakers write it.",
        "Translate the {what} of the given date into {lang}; print nothing else.",
        "Input: an English date. Output: the {lang} name of its {what}, e.g. '{x}' gives '{y}'.",
    ),
)

DATE_WRITE = WordingSet(
    what={"short": "short numeric date", "medium": "medium-length date with the month abbreviated",
          "long": "long date with the month written out"},
    train=(
        "Rewrite the ISO date (YYYY-MM-DD) as a {what} in {lang} format.",
        "Format this date the way {lang} speakers write a {what}. Output only the date.",
        "ISO date to {lang} {what}.",
        "For example, {x} becomes {y}. Convert the given ISO date the same way.",
        "How would this date look as a {what} in {lang}? Give just the formatted date.",
        "I have dates in year-month-day form and need each one written as a {what}, following the usual {lang} "
        "conventions (order of day, month and year, separators, month names). Output the converted date only.",
        "YYYY-MM-DD → {lang} {what}",
    ),
    heldout=(
        "Show the given date as a {what}, {lang} style.",
        "Turn the machine-readable date into a {what} for {lang} readers, e.g. {x} → {y}.",
        "Please write this date as someone using {lang} conventions would, as a {what}.",
    ),
)

DATE_READ = WordingSet(
    what={"read": "long date"},
    train=(
        "The input is a date written out in {lang}. Give it in ISO format, YYYY-MM-DD.",
        "Convert the {lang} {what} to ISO 8601: year, month and day with dashes, month and day zero-padded.",
        "{lang} date → ISO date",
        "What is this {lang} date in YYYY-MM-DD form? Only the date, please.",
        "Parse the date. It is written the {lang} way with the month as a word; answer like {y} for '{x}'.",
        "Normalise the {lang} long date to year-month-day.",
        "Someone wrote a date in {lang}, month name and all. I need it machine-readable: four-digit year, "
        "two-digit month, two-digit day, separated by hyphens. Reply with that and nothing else.",
    ),
    heldout=(
        "Rewrite the {lang} date as an ISO date.",
        "Read the {lang} date, such as '{x}' and output {y}-style ISO.",
        "Give the YYYY-MM-DD form of this date, which is written in {lang}.",
    ),
)

NUMBER_WRITE = WordingSet(
    what={"cardinal": "number", "ordinal": "ordinal"},
    train=(
        "Write the {what} in {lang} words.",
        "Spell out this {what} in {lang}. Use words only, no digits.",
        "digits → {lang} {what} in words",
        "How do you write this {what} in {lang}? Answer with the words.",
        "Example: {x} → {y}. Write the next one the same way.",
        "The input is a whole number from 1 to 99 in digits. Write the {lang} {what} for it in words, with the "
        "usual {lang} spelling, hyphens and spaces.",
        "{lang} words for the {what}.",
    ),
    heldout=(
        "Give the {lang} spelling of the {what} shown in digits.",
        "Convert the digits into a written-out {lang} {what}, e.g. {x} becomes '{y}'.",
        "Say this {what} in {lang}, written out in letters.",
    ),
)

NUMBER_READ = WordingSet(
    what={"read": "number"},
    train=(
        "The input is a number written in {lang} words. Give it in digits.",
        "Convert the {lang} number words to digits.",
        "What number is this? It is written in {lang}; answer with digits only.",
        "{lang} number words → digits",
        "Read the {lang} words, e.g. '{x}' means {y}, and reply with the value as digits.",
        "Each input spells out a whole number from 1 to 99 in {lang}. Write the same number with Arabic numerals "
        "and nothing else: no words, no separators.",
        "Digits for a number spelled out in {lang}.",
    ),
    heldout=(
        "Turn the {lang} number words into a number.",
        "Give me the numeric value of this {lang} number, like {y} for '{x}'.",
        "Which integer do these {lang} words name? Digits only.",
    ),
)

NUMBER_FORMAT = WordingSet(
    what={"decimal": "number", "euro": "euro amount", "dollar": "US dollar amount"},
    train=(
        "Format the {what} as it is written in {lang}: digit grouping, decimal mark and currency sign where needed.",
        "Write this {what} the {lang} way.",
        "plain number → {lang}-formatted {what}",
        "How would a document in {lang} print this {what}? Give only the formatted value.",
        "Example: {x} → {y}. Format the next value the same way.",
        "The input is a number with a dot as decimal point and no grouping. Show it as a {what} following {lang} "
        "conventions: the thousands separator, the decimal separator, and the currency symbol and its position.",
        "{lang} formatting of a {what}.",
    ),
    heldout=(
        "Localise the {what} for {lang} readers.",
        "Present the value as a {what} in {lang} style, e.g. {x} is shown as {y}.",
        "Apply {lang} number formatting to this {what}.",
    ),
)

NAME_PART = WordingSet(
    what={"family": "family name (surname)", "given": "given name (first name)"},
    train=(
        "Give the {what} of this {lang} person. Answer with the name only.",
        "What is the {what} here? The names are {lang}.",
        "{lang} full name → {what}",
        "Extract the {what} from the full name.",
        "Example: '{x}' → '{y}'. Now the next name.",
        "Each input is the full name of one {lang} person, given name first and family name last, one word each. "
        "Reply with the {what} exactly as written.",
        "Which part of this {lang} name is the {what}? Reply with it.",
    ),
    heldout=(
        "Pull out the {what} of the {lang} person named.",
        "Return just the {what}, for instance '{y}' for '{x}'.",
        "Someone's full name ({lang}) comes in; keep only the {what}.",
    ),
)

NAME_SWAP = WordingSet(
    what={"swap": "'Family, Given' order"},
    train=(
        "Rewrite the {lang} name as 'Surname, First name'.",
        "Put the family name first, then a comma and the given name. The names are {lang}.",
        "{lang} name → Surname, Given",
        "How would this {lang} name appear in an alphabetical index? Family name, comma, given name.",
        "Example: '{x}' → '{y}'. Reorder the next name the same way.",
        "The input is the full name of one {lang} person, given name first. Write it in {what}: the family name, "
        "a comma and a space, then the given name.",
        "Swap the {lang} person's name into {what}.",
    ),
    heldout=(
        "List this {lang} person surname first, with a comma.",
        "Turn '{x}' into '{y}': reorder the {lang} name for a bibliography.",
        "Write the {lang} person's name the way a library catalogue files it.",
    ),
)

WORD_PICK = WordingSet(
    what={"last": "last", "second": "second"},
    train=(
        "Give the {what} word of the list. The words are {lang}.",
        "Which word comes {what} in this comma-separated list? Reply with that word.",
        "{what} word of a list of {lang} words",
        "Return the {what} item of the list, exactly as written.",
        "Example: '{x}' → '{y}'. Do the same for the next list.",
        "You will get between three and five {lang} words separated by commas. Answer with the {what} word only, "
        "without the comma.",
        "{lang} words in a list: what is the {what} one?",
    ),
    heldout=(
        "Pick out the {what} of the {lang} words.",
        "Print only the {what} entry, e.g. '{y}' for '{x}'.",
        "From this list of {lang} words, keep the {what} and drop the rest.",
    ),
)

WORD_REVERSE = WordingSet(
    what={"reverse": "reverse order"},
    train=(
        "Write the {lang} words in {what}, separated by commas.",
        "Reverse the order of the words in this list. They are {lang} words.",
        "{lang} word list → same words, {what}",
        "What is this comma-separated list read backwards, word by word?",
        "Example: '{x}' → '{y}'. Reverse the next list the same way.",
        "The input lists three to five {lang} words with commas. Output the same words, last one first, still "
        "separated by a comma and a space; do not change the words themselves.",
        "Flip the {lang} list: last word first.",
    ),
    heldout=(
        "Put the {lang} words in the opposite order.",
        "Read the list from the end, e.g. '{x}' becomes '{y}'.",
        "Reverse this list of {lang} words, keeping the commas.",
    ),
)

# (family, op) -> its wording set.
WORDINGS: dict[tuple[str, str], WordingSet] = {
    ("date-name", "month"): DATE_NAME, ("date-name", "weekday"): DATE_NAME,
    ("date-format", "short"): DATE_WRITE, ("date-format", "medium"): DATE_WRITE,
    ("date-format", "long"): DATE_WRITE, ("date-format", "read"): DATE_READ,
    ("number-words", "cardinal"): NUMBER_WRITE, ("number-words", "ordinal"): NUMBER_WRITE,
    ("number-words", "read"): NUMBER_READ,
    ("number-format", "decimal"): NUMBER_FORMAT, ("number-format", "euro"): NUMBER_FORMAT,
    ("number-format", "dollar"): NUMBER_FORMAT,
    ("person-name", "family"): NAME_PART, ("person-name", "given"): NAME_PART, ("person-name", "swap"): NAME_SWAP,
    ("word-list", "last"): WORD_PICK, ("word-list", "second"): WORD_PICK, ("word-list", "reverse"): WORD_REVERSE,
}


def render(template: str, lang: str, what: str, example: tuple[str, str]) -> str:
    """Fill one wording's slots and capitalise its first letter."""
    text = template.format(lang=lang, what=what, x=example[0], y=example[1])
    return text[0].upper() + text[1:]
