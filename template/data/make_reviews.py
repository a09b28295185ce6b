"""Writes template/data/reviews/reviews.csv: short product reviews for the text pipeline.

The text is written for this project (no third-party text): each review combines
hand-written phrases (an opening about the product, a detail, a verdict), picked by a
seeded random generator, so the file is the same on every run:

    python -m template.data.make_reviews
"""

import csv
import os
import random

ROWS = 3000
SEED = 15

PRODUCTS = {
    "kettle": [
        "boils a full jug in under three minutes",
        "has a lid that sticks",
        "keeps the water hot for a long time",
        "is louder than I expected",
        "switches off as soon as the water boils",
    ],
    "backpack": [
        "has room for a laptop and a change of clothes",
        "lost a zip after a month",
        "stays comfortable on long walks",
        "keeps everything dry in the rain",
        "has straps that dig into the shoulders",
    ],
    "headphones": [
        "sound clear at any volume",
        "lose the connection every few minutes",
        "fold flat for travel",
        "block out the noise of the train",
        "hurt my ears after an hour",
    ],
    "desk lamp": [
        "lights the whole desk evenly",
        "flickers when it is dimmed",
        "bends to any angle and stays there",
        "is too dim for reading",
        "has a warm light that is easy on the eyes",
    ],
    "running shoes": [
        "grip well on wet paths",
        "wore through at the heel in weeks",
        "feel light from the first run",
        "need a size up",
        "cushion every step on hard roads",
    ],
    "coffee grinder": [
        "grinds evenly for espresso",
        "spills grounds all over the counter",
        "is quiet enough for early mornings",
        "jammed on the second day",
        "is easy to take apart and clean",
    ],
    "umbrella": [
        "survived a windy week without bending",
        "turned inside out on day one",
        "folds small enough for a coat pocket",
        "leaks at the seams",
        "opens with one hand",
    ],
    "blender": [
        "crushes ice in seconds",
        "leaks from the base",
        "makes smooth soup without lumps",
        "smells of hot plastic",
        "is simple to clean under the tap",
    ],
}
OPENINGS = [
    "I bought this {product} last month.",
    "This {product} was a gift.",
    "We use the {product} every day.",
    "After a year with this {product}, here is my view.",
    "I replaced my old {product} with this one.",
    "The {product} arrived quickly and well packed.",
    "Second {product} I have owned.",
]
VERDICTS = [
    "I would buy it again.",
    "I am returning it.",
    "Good value for the price.",
    "Not worth the money.",
    "It does the job.",
    "I recommend it to anyone.",
    "Disappointing overall.",
    "Better than the expensive ones.",
    "It is fine, nothing special.",
    "Five stars from me.",
]
LINKS = [
    "It {detail}.",
    "It {detail}, and it {other}.",
    "It {detail} but it {other}.",
    "Mostly it {detail}; also it {other}.",
]


def reviews(rows: int = ROWS, seed: int = SEED):
    """(review_id, product, text) tuples."""
    rng = random.Random(seed)
    names = sorted(PRODUCTS)
    for review_id in range(rows):
        product = rng.choice(names)
        detail, other = rng.sample(PRODUCTS[product], 2)
        text = " ".join(
            [
                rng.choice(OPENINGS).format(product=product),
                rng.choice(LINKS).format(detail=detail, other=other),
                rng.choice(VERDICTS),
            ]
        )
        yield review_id, product, text


def main(path: str = os.path.join(os.path.dirname(__file__), "reviews", "reviews.csv")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review_id", "product", "text"])
        writer.writerows(reviews())


if __name__ == "__main__":
    main()
