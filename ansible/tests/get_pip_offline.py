# Copyright: zferry contributors
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip.py from ci-files.testing.ansible.com, which this project's
machines cannot reach (only PyPI is). ansible/check.sh seeds ansible-test's cache with
this script instead, with CONTROLLER_PIP set to the project venv's pip: that pip installs
the exact packages ansible-test asked for (for example pip==24.2) from PyPI into the new
test venv (`pip --python`). The project venv's recent pip uses the system trust store,
which the pip bundled with Python 3.11 (ensurepip) does not.
"""

from __future__ import annotations

import subprocess
import sys

CONTROLLER_PIP = "pip"


def main() -> int:
    """Bootstrap pip, then install the requested packages with it."""
    # get-pip.py options that plain `pip install` does not know.
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    return subprocess.call([CONTROLLER_PIP, "--python", sys.executable, "install"] + args)


if __name__ == "__main__":
    sys.exit(main())
