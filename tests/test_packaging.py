"""Installed, everything lives under the ``esl_deploy`` name: a user's own ``train.py``, ``export.py`` or
``cli.py`` next to their script cannot hide the package's modules (issue 21)."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_nothing_called_train_export_or_cli_is_installed():
    dist = importlib.metadata.distribution("esl-deploy")
    assert (dist.read_text("top_level.txt") or "").split() == ["esl_deploy"]
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"esl": "esl_deploy.cli:main"}


def test_a_users_train_py_does_not_break_the_import(tmp_path):
    for name in ("train", "export", "hw_models", "cli"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    (tmp_path / "my_script.py").write_text(
        "import esl_deploy\n"
        "from esl_deploy.train.masking import MaskEngine\n"
        "from esl_deploy.export.nir.write import to_nir\n"
        "from esl_deploy.hw_models.sops import count_activity\n"
        "import esl_deploy.cli\n"
        "print('ok', esl_deploy.__version__)\n")
    r = subprocess.run([sys.executable, "my_script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok " + __import__("esl_deploy").__version__
    esl = Path(sys.executable).with_name("esl")
    r = subprocess.run([str(esl), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "esl" in r.stdout, r.stderr
