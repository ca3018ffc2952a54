"""The words and numbers synthetic pages are written with, embedded so Synthmix needs no download.

Common English words in lower case, none longer than ten letters: a page must wrap at word
boundaries, and short words keep a narrow column (half a 448-pixel page) from meeting a word wider
than itself. Every word is plain ASCII without markdown syntax (`#`, `|`, `*`, `_`) so the markdown
ground truth never needs escaping and the built-in Pillow font has a glyph for every character.
"""

from __future__ import annotations

import random

WORDS: tuple[str, ...] = tuple(
    """
    able about above accept across act action add address after again against age agree air all
    allow almost alone along already also always amount analysis and animal another answer any
    appear apply area argue arm around arrive art article ask assume attack author available away
    back bad bank base be beat become before begin behind believe best better between beyond big
    bill black blood blue board body book born both box boy break bring brother budget build
    business but buy call camera campaign can capital car card care career carry case catch cause
    cell center central century certain chair chance change charge check child choice choose
    church city claim class clear close coach cold collection college color come common company
    compare computer concern condition consider contain control cost could country couple course
    court cover create crime cultural culture cup current customer cut dark data daughter day dead
    deal death debate decade decide decision deep degree describe design detail develop device
    die different difficult dinner direction discover discuss disease doctor dog door down draw
    dream drive drop drug during each early east easy economic economy edge effect effort eight
    either election else employee end energy enjoy enough enter entire evening event ever every
    evidence exactly example expect expert explain eye face fact factor fail fall family far fast
    father fear federal feel field fight figure fill film final finally find fine finger finish
    fire firm first fish five floor fly focus follow food foot force foreign forget form former
    forward four free friend from front full fund future game garden general generation girl give
    glass goal good great green ground group grow growth guess gun hair half hand happen happy
    hard have head health hear heart heat heavy help her here herself high history hit hold home
    hope hospital hot hotel hour house however huge human hundred idea identify image imagine
    impact improve include increase indicate industry inside instead interest interview into
    issue item itself job join just keep key kid kind kitchen know land language large last late
    later laugh law lawyer lay lead leader learn least leave left leg legal less letter level lie
    life light like likely line list listen little live local long look lose loss lot love low
    machine magazine main maintain major make manage manager many market material matter may
    maybe measure media medical meet meeting member memory mention message method middle might
    military million mind minute miss mission model modern moment money month more morning most
    mother mouth move movement much music must name nation natural nature near nearly necessary
    need network never new news next nice night none north note nothing notice number occur offer
    office officer official often oil old once only open operation option order other others out
    outside over own owner page pain painting paper parent part partner party pass past patient
    pattern pay peace people perform perhaps period person phone picture piece place plan plant
    play player point police policy popular position positive power practice prepare present
    pressure pretty prevent price private probably problem process produce product program
    project property protect prove provide public pull purpose push quality question quickly
    quite race radio raise range rate rather reach read ready real reason receive recent record
    red reduce reflect region relate remain remember remove report represent require research
    resource respond rest result return reveal rich right rise risk river road rock role room
    rule run safe same save say scene school science score sea season seat second section
    security see seek seem sell send senior sense series serious serve service set seven several
    shake share short should shoulder show side sign similar simple simply since sing single
    sister sit site six size skill small smile social society soldier some someone son song soon
    sort sound source south space speak special speech spend sport spring staff stage stand
    standard star start state station stay step still stock stop store story strategy street
    strong student study stuff style subject success suddenly suffer summer support sure surface
    system table take talk task teach teacher team tell ten tend term test than thank that theory
    there these thing think third those though thought thousand threat three through throughout
    throw thus time today together tonight too top total tough toward town trade training travel
    treat tree trial trip trouble true truth try turn type under unit until upon use usually value
    various very victim view visit voice vote wait walk wall want war watch water way weapon wear
    week weight well west western what whatever when where whether which while white whole whom
    whose why wide wife will win wind window wish with within without woman wonder word work
    worker world worry would write writer wrong yard yeah year yes yet young yourself
    """.split()
)

#: single letters used as variables in the inline math.
VARIABLES: tuple[str, ...] = ("x", "y", "z", "n", "k", "t", "a", "b")


def word(rng: random.Random) -> str:
    """One vocabulary word, lower case."""
    return rng.choice(WORDS)


def number(rng: random.Random) -> str:
    """A number as it appears in running text or a table: an integer, a year, a decimal or a
    thousands-grouped count, so OCR targets hold digits, points and commas, never a sign."""
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randint(0, 99))
    if kind == 1:
        return str(rng.randint(1900, 2030))
    if kind == 2:
        return f"{rng.uniform(0, 100):.{rng.randint(1, 2)}f}"
    return f"{rng.randint(1000, 999999):,}"
