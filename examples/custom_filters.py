"""Rules of your own for examples/custom.yaml, run by smelt's `python` stage in its worker processes.

pyarrow is the only package they need; `smelt_data` (the decorators, which name each function's mode)
comes with smelt's worker. `import smelt_data` rather than `from smelt_data import map, filter` keeps
Python's own `map` and `filter` usable here.
"""

import re

import pyarrow.compute as pc

import smelt_data

WORD = re.compile(r"\w+")


@smelt_data.filter
def long_enough(row, min_chars=500):
    """Keeps a page with at least `min_chars` characters of text, else drops it as `too_short`."""
    if len(row["text"]) < min_chars:
        return False, "too_short"
    return True


@smelt_data.map
def word_stats(row):
    """Adds the page's word count and mean word length (declared in the stage's `output_schema`)."""
    words = WORD.findall(row["text"])
    mean = sum(map(len, words)) / len(words) if words else 0.0
    return {"n_words": len(words), "mean_word_len": round(mean, 3)}


@smelt_data.batch
def domains(batch):
    """Adds `domain`, the URL's host, for the whole batch at once with pyarrow.compute (no Python per row)."""
    parts = pc.extract_regex(batch["url"], r"^[a-zA-Z]+://(?P<host>[^/:?#]+)")
    return {"domain": pc.struct_field(parts, "host")}
