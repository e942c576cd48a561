"""In-context regression error as an `evaluate` metric that loads offline:
`evaluate.load("<path>/icl_regression_error")`.

Each example is one label prediction: the error is `1/2 ||reference - prediction||^2`; the normalised error divides
the mean error by the mean error of the zero predictor on the same references (so the zero predictor scores 1).
"""

import datasets
import evaluate

_DESCRIPTION = "Mean 1/2 squared error of in-context label predictions, raw and normalised by the zero predictor."
_KWARGS = """
Args:
    predictions: predicted label vectors (lists of floats).
    references: true label vectors of the same lengths.
Returns:
    error: mean of 1/2 ||reference - prediction||^2; zero_error: mean of 1/2 ||reference||^2;
    normalised_error: error / zero_error.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class IclRegressionError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        if not references:
            raise ValueError("icl_regression_error needs at least one example")
        errors, zeros = [], []
        for prediction, reference in zip(predictions, references):
            if len(prediction) != len(reference):
                raise ValueError(f"prediction of length {len(prediction)} for a label of length {len(reference)}")
            errors.append(0.5 * sum((r - p) ** 2 for p, r in zip(prediction, reference)))
            zeros.append(0.5 * sum(r * r for r in reference))
        error, zero = sum(errors) / len(errors), sum(zeros) / len(zeros)
        return {"error": error, "zero_error": zero, "normalised_error": error / zero if zero > 0 else float("nan")}
