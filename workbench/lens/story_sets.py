"""Labelled story endings the project generates for probes: celebration endings versus other endings.

Each item is an (opening, ending) pair, so a probe reads the ending's tokens with the opening as context.
The two sets share openings and names; only the ending's kind differs. Seeded and deterministic.
"""

from __future__ import annotations

import random

OPENINGS = [
    "{a} had lived in the little harbour town for years, and everyone knew the blue door of the bakery.",
    "After the long winter, {a} finally opened the letter that had been waiting on the kitchen table.",
    "The train from the city was late again, and {a} watched the rain run down the window.",
    "{a} and {b} met on the first day of the pottery class, when the wheel sent clay across the room.",
    "Nobody in the village expected the old mill to open its doors again, least of all {a}.",
    "On the night of the storm, {a} found a stray dog sheltering under the porch.",
    "For three summers {a} had worked at the campsite by the lake, fixing canoes and telling stories.",
    "The new neighbour, {b}, arrived with a van full of books and a piano nobody could lift.",
]
CELEBRATION = [
    " In the end {a} and {b} were married in the garden, and everyone raised a glass to the happy couple.",
    " A year later the whole town came to the wedding, and the bride and groom danced until midnight.",
    " So the story ends with a party: music, cake, cheers and toasts to {a} and {b}, together at last.",
    " They said their vows under the apple trees, and the guests threw petals as the bells rang.",
    " That spring {a} proposed, {b} said yes, and the celebration filled the square with laughter.",
    " The festival that night was the happiest anyone remembered, with fireworks and dancing for {a}.",
]
OTHER = [
    " In the end {a} packed a small bag, locked the door and took the early bus out of town for good.",
    " The next morning the river had flooded the road, and {a} spent the day moving sandbags alone.",
    " Months later {a} still did not know who had sent the letter, and the question never went away.",
    " {a} wrote down the measurements, filed the report and went home to cook a quiet dinner.",
    " The doctor said the results would take another week, so {a} sat by the window and waited.",
    " Eventually {b} sold the house, and {a} never heard the piano played again.",
]
NAMES = ["Anna", "Tom", "Priya", "Marcus", "Lena", "Omar", "Rosa", "Jonas", "Mei", "Daniel", "Ines", "Kofi"]


def story_endings(kind: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (opening, ending) pairs whose ending is a celebration (kind="celebration") or not (kind="other")."""
    endings = {"celebration": CELEBRATION, "other": OTHER}[kind]
    rng = random.Random(f"{kind}-{seed}")
    items = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        items.append((rng.choice(OPENINGS).format(a=a, b=b), rng.choice(endings).format(a=a, b=b)))
    return items


__all__ = ["CELEBRATION", "OPENINGS", "OTHER", "story_endings"]
