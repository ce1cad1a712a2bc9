#!/usr/bin/env bash
# make sanity: ansible-test sanity on the collection as Galaxy gets it. Builds the tarball
# (galaxy.yml's build_ignore applies), installs it into a temporary tree and runs
# `ansible-test sanity --venv` there, so only what ships is tested and no checkout file leaks in.
# tools/sanity-pending.txt: temporary ignores for files other people are fixing (not shipped).
# ansible-test pip-installs each test's requirements into its own venvs (~/.ansible/test/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python}
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test bootstraps pip in its venvs with a get-pip script from ci-files.testing.ansible.com;
# where that host is out of reach (CI reaches PyPI only), tools/ansible_test_get_pip.py stands in.
pip_version=$("$PYTHON" -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$py_version"'"))["pip"])')
get_pip=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -f "$get_pip" ] || grep -q "Stand-in for the get-pip.py" "$get_pip"; then
    mkdir -p "$(dirname "$get_pip")"
    cp tools/ansible_test_get_pip.py "$get_pip"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ansible-galaxy collection build --output-path "$tmp" . >/dev/null
# --force: the checkout's own copy (collections/ in ansible.cfg's path) counts as installed.
ansible-galaxy collection install --force --no-deps -p "$tmp/tree" "$tmp"/sglang_ops-cluster-*.tar.gz \
    >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
cd "$tmp/tree/ansible_collections/sglang_ops/cluster"
core=$("$PYTHON" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')
ignore=tests/sanity/ignore-$core.txt
shipped=$(cat "$ignore" 2>/dev/null | wc -l)
grep -v -e '^#' -e '^$' "$repo/tools/sanity-pending.txt" >> "$ignore" || true
if [ "$(wc -l < "$ignore")" -gt "$shipped" ]; then
    echo "$ignore: lines after $shipped come from tools/sanity-pending.txt (an 'unnecessary' one: delete it there)"
fi
echo "ansible-test sanity in $PWD ($(find . -type f | wc -l) files)"
ansible-test sanity --venv --python "$py_version" --color no "$@"
