"""Sharing models: model cards with the harness results, and pushing model, tokenizer and card to the Hub."""
