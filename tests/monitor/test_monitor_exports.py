from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import monitor
import monitor.drift


def test_importing_monitor_does_not_import_evidently() -> None:
    code = "import sys, monitor, monitor.drift; print('evidently' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_only_the_evidently_module_imports_evidently() -> None:
    package = Path(monitor.__file__).parent
    importers = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "from evidently" in p.read_text() or "import evidently" in p.read_text()
    )
    assert importers == ["_evidently.py"]
