"""`python -m mesa_lm.reproduce`: the one-command reproduction report of [P1] and [P2]."""
