"""How long the report trains and how much it evaluates: `full` (about an hour on 2 CPU cores: every setting, larger
evaluation sets, longer training), `quick` (about 11 minutes on 2 CPU cores) or `smoke` (seconds, for tests: every code
path runs, no claim is expected to hold). Both real budgets train far less than the papers (see docs/reproduce.md)."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Budget:
    level: str = "full"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"budget level {self.level!r} is not one of {LEVELS}")

    def steps(self, quick: int, full: int) -> int:
        return {"smoke": 3, "quick": quick, "full": full}[self.level]

    def pick(self, quick, full):
        return full if self.level == "full" else quick

    @property
    def quick(self) -> bool:
        return self.level != "full"

    @property
    def eval_sequences(self) -> int:
        return {"smoke": 16, "quick": 256, "full": 2048}[self.level]

    @property
    def tune_sequences(self) -> int:
        """Training sequences on which the baselines' hyperparameters are tuned."""
        return {"smoke": 32, "quick": 256, "full": 512}[self.level]

    @property
    def resamples(self) -> int:
        return {"smoke": 20, "quick": 200, "full": 1000}[self.level]
