"""The README's tour runs as written and prints what its comments say."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_setup_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_tour_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    code = re.search(r"## A short tour\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    expected = [m.group(1) for m in re.finditer(r'print\(.*\)\s+# "(.*)"', code)]
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue().splitlines() == expected
    assert (tmp_path / "runs" / "ckpt-1").is_dir()
