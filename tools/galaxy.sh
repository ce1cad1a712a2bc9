#!/usr/bin/env bash
# make galaxy: Galaxy's importer (galaxy-importer, requirements/galaxy.txt) on the built tarball,
# locally, without containers (tools/galaxy-importer.cfg). It loads every plugin and role the way
# Galaxy does, renders their docs with ansible-doc and runs ansible-lint on the collection.
# Passes when the importer exits 0 and logs no ERROR line; importer_result.json and the log land
# in tests/output/galaxy/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3}
venv=$repo/.venv-galaxy
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$(cat requirements/galaxy.txt)" ]; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r requirements/galaxy.txt
    cp requirements/galaxy.txt "$venv/.requirements"
fi
out=$repo/tests/output/galaxy
rm -rf "$out"
mkdir -p "$out"
"$venv/bin/ansible-galaxy" collection build --output-path "$out" . >/dev/null
cd "$out"
set +e
PATH=$venv/bin:$PATH GALAXY_IMPORTER_CONFIG=$repo/tools/galaxy-importer.cfg \
    "$venv/bin/python" -m galaxy_importer.main sglang_ops-cluster-*.tar.gz 2>&1 | tee importer.log
rc=${PIPESTATUS[0]}
set -e
errors=$(grep -c '^ERROR' importer.log || true)
warnings=$(grep -c '^WARNING' importer.log || true)
echo "galaxy-importer: exit $rc, $errors ERROR line(s), $warnings WARNING line(s) (log: tests/output/galaxy/importer.log)"
[ "$rc" -eq 0 ] && [ "$errors" -eq 0 ]
