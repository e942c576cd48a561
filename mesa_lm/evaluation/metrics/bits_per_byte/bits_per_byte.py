"""Bits per byte (and per character) as an `evaluate` metric that loads offline: `evaluate.load("<path>/bits_per_byte")`.

The tokenizer-independent measure of a language model (lm-evaluation-harness' `bits_per_byte`, nanoGPT's
character-level loss): the negative log-likelihood of a text, in bits, divided by its length in UTF-8 bytes (or in
characters). Inputs are per-window sums of the NLL of the text tokens and of the bytes and characters those tokens
cover.
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Bits per byte and per character: sum of text-token NLL (nats) / (UTF-8 bytes or characters) / ln 2."
_KWARGS = """
Args:
    text_nll_sum: summed next-token negative log-likelihood (nats) of the text tokens of each window.
    num_bytes: UTF-8 bytes of the text those tokens cover.
    num_chars: characters of the text those tokens cover.
Returns:
    bits_per_byte, bits_per_character, text_nll (the summed NLL), bytes, characters.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BitsPerByte(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"text_nll_sum": datasets.Value("float64"),
                                        "num_bytes": datasets.Value("float64"),
                                        "num_chars": datasets.Value("float64")}),
        )

    def _compute(self, text_nll_sum, num_bytes, num_chars):
        nll, nbytes, nchars = math.fsum(text_nll_sum), math.fsum(num_bytes), math.fsum(num_chars)
        if nbytes <= 0:
            raise ValueError("bits per byte need at least one scored token that covers text")
        return {"bits_per_byte": nll / nbytes / math.log(2), "bits_per_character": nll / nchars / math.log(2),
                "text_nll": nll, "bytes": nbytes, "characters": nchars}
