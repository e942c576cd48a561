"""The README's usage example runs as written, and its first lines are the two commands."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_main_job_and_the_test_command():
    first_block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert "train_lm.py" in first_block[0]
    assert "pytest" in first_block[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
