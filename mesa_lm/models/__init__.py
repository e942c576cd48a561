"""Hugging Face model families of mesa-lm."""
