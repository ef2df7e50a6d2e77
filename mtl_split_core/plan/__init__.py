"""Split-point planning: measured profiles, a link model, and the choice of split."""
