"""pytest setup for transformers' common tests: their markers, and undocumented self-skips reported as failures."""

import pytest

_UPSTREAM_MARKERS = (
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "all_flash_attn_test",
    "generate",
    "is_training_test",
    "is_tensor_parallel_test",
    "is_expert_parallel_test",
    "is_fsdp_test",
    "torch_compile_test",
    "torch_export_test",
    "bitsandbytes",
)


def pytest_configure(config):
    for marker in _UPSTREAM_MARKERS:
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' own test suite")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """An upstream test that skips itself for a reason not documented in `test_mesa_upstream.py` fails instead.

    transformers' tests skip themselves when a model lacks a feature (e.g. no `cache` argument in `forward`); such a
    skip may hide a gap in this family. Only this suite's own skips (`NOT_APPLICABLE...`) and the self-skips listed
    in `UPSTREAM_SKIPS` with the message they skip with (`UPSTREAM_SKIP_MESSAGES`) stay skips; every other one is
    reported as a failure naming upstream's reason.
    """
    outcome = yield
    report = outcome.get_result()
    cls = getattr(item, "cls", None)
    if not report.skipped or cls is None or not getattr(cls, "mix_name", ""):
        return
    module = item.module
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if any(module.is_test_or_expansion(item.name, name) for name in module.not_applicable_for(cls.mix_name)):
        return  # skipped by this suite, with its reason
    for name, expected in module.UPSTREAM_SKIP_MESSAGES.items():
        if module.is_test_or_expansion(item.name, name) and expected in reason:
            return  # the documented self-skip, for the documented reason
    report.outcome = "failed"
    report.longrepr = (
        f"undocumented skip of an upstream test (a gap in the model? if it truly does not apply, list it with its "
        f"reason in tests/upstream/test_mesa_upstream.py and docs/compatibility.md): {reason}"
    )
