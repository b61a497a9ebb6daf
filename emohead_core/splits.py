"""Held-out frames of a clip, one rule for every stage.

The renderer's ``within_clip`` split, the audio-expression module's ``within_clip`` split and the
hyperplane fit's exclusion of held-out frames (``hyperplanes.exclude_held_out``) all hold out a
clip's LAST frames, and must agree on how many, or a frame tested by one stage would be fitted by
another. :func:`held_out_count` is that rule.
"""

from __future__ import annotations

import math


def held_out_count(n: int, test_fraction: float) -> int:
    """Number of held-out (test) frames at the end of an ``n``-frame clip whose last
    ``test_fraction`` is held out: floor(test_fraction * n + 0.5), at least 1 and at most n - 1
    (a clip keeps one training frame). ``test_fraction`` >= 1 holds out the whole clip (a test
    clip of a clip-level split); 0 holds out nothing."""
    n = int(n)
    f = float(test_fraction)
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"test_fraction must be a finite number >= 0, got {test_fraction!r}")
    if n <= 0 or f == 0:
        return 0
    if f >= 1:
        return n
    if n == 1:
        return 0
    return min(max(int(math.floor(f * n + 0.5)), 1), n - 1)
