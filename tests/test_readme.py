"""The README's examples work as written."""

import json
import re
from pathlib import Path


from itomd.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_user_potential_example(tmp_path, monkeypatch, capsys):
    block = next(b for b in _python_blocks() if b.startswith("# my_potential.py"))
    (tmp_path / "my_potential.py").write_text(block)
    monkeypatch.chdir(tmp_path)
    line = next(l for l in README.splitlines() if l.startswith("itomd reference --system my_potential.py"))
    assert main(line.split()[1:]) == 0
    out = json.loads(capsys.readouterr().out)
    ts = out["implied_timescales"]
    assert len(ts) >= 2 and ts[0] > ts[1] > 0


def test_python_api_example(capsys):
    block = next(b for b in _python_blocks() if "exact_reference(system)" in b)
    exec(compile(block, "README", "exec"), {})
    assert "[" in capsys.readouterr().out


def test_python_training_example(tmp_path, monkeypatch, capsys):
    block = next(b for b in _python_blocks() if "ITOEstimator" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README", "exec"), {})
    shape, _, lam = capsys.readouterr().out.strip().rpartition(" ")
    assert "torch.Size([100, 1])" in shape and 0.9 < float(lam) < 1.0
