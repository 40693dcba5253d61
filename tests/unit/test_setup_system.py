"""scripts/setup-system installs missing Debian packages, or says in one sentence why it cannot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup-system"


def test_packages_already_installed_need_nothing_and_no_root():
    assert subprocess.run([SCRIPT, "bash"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to another user")
def test_a_missing_package_without_root_is_one_clear_sentence_not_an_apt_error():
    import tempfile
    # a copy where the other user can reach it: the checkout may sit in a folder only root may enter
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        script = Path(folder) / "setup-system"
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script,
                                 "esb-no-such-package"], capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode == 1
    assert result.stderr.strip() == ("setup-system: the Debian packages esb-no-such-package are missing and "
                                     "installing them needs root: run 'sudo apt-get install esb-no-such-package' "
                                     "(or this make target as root).")
