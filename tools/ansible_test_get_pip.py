"""Stand-in for the get-pip.py that `ansible-test --venv` downloads to bootstrap pip.

ansible-test creates its virtual environments without pip and fetches a get-pip script from
ci-files.testing.ansible.com, which a machine that reaches only PyPI cannot reach.
`make sanity` copies this file to ansible-test's cache (~/.ansible/test/cache/get_pip_X_Y.py)
when no script is there. It takes get-pip.py's arguments (pip options, the pinned packages such
as pip==24.2, --no-setuptools, --no-wheel): it installs the pip bundled with Python (ensurepip,
offline), then the pinned packages from the package index with that pip.
"""

import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
    if "--no-setuptools" in sys.argv or "--no-wheel" in sys.argv:
        # get-pip.py leaves these out when asked; ensurepip may have brought setuptools.
        unwanted = [name for name, flag in (("setuptools", "--no-setuptools"), ("wheel", "--no-wheel"))
                    if flag in sys.argv]
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q"] + unwanted,
                        stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
