"""Analyses that reproduce the papers' claims: weight products and constructions, probes, attention maps,
linearisation (for [P1]), and the [P2] gradient-flow study (`p2`)."""
