"""One module per experiment of the report; each exposes `run(out, budget) -> ExperimentResult`."""
