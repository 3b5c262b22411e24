import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import napari_smlm.core as core
for m in pkgutil.walk_packages(core.__path__, 'napari_smlm.core.'):
    importlib.import_module(m.name)
import napari_smlm.cli
bad = sorted(k for k in sys.modules if k.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'))
print(len(list(pkgutil.walk_packages(core.__path__))), bad)
assert not bad, bad
"""


def test_core_and_cli_import_neither_qt_nor_napari():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count, bad = proc.stdout.split(" ", 1)
    assert int(count) >= 10  # the walk really imported the core's modules
    assert bad.strip() == "[]"
