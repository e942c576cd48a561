"""Evaluation harnesses: perplexity, few-shot in-context regression, next-step error on dynamics, their baselines,
bootstrap intervals, evaluate metrics, and variant comparison (tables and figures)."""
