#!/usr/bin/env bash
# make matrix: what must hold under every ansible-core minor version the collection claims
# (requirements/matrix.txt, one venv each under .venv-matrix/, reused while its pins are unchanged):
#   claim    meta/runtime.yml requires_ansible and each role's min_ansible_version = the list
#   targets  modules and module_utils parse for the oldest target Python that ansible-core supports
#   syntax   ansible-playbook --syntax-check of every playbooks/*.yml (-i inventories/two_node)
#   unit     python -m pytest $UNIT_XDIST tests/unit (the Makefile's workers), not for the version
#            MATRIX_UNIT_DONE names: `make test` sets it to the tooling venv's ansible-core, whose
#            unit tests `make unit` just ran
#   docs     ansible-doc renders every module, filter and role in text mode (tools/render_docs.sh)
#   plan     tests/matrix/plan.yml: the cluster_plan action on the sample inventory, on the
#            controller only (no host is contacted)
# Prints the wall time of every step and a summary table; exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
: "${UNIT_XDIST:?pytest-xdist options of the unit tests: run make matrix, whose Makefile sets them}"
ROOT=.venv-matrix
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

mapfile -t pins < <(grep -E '^ansible-core==' requirements/matrix.txt)
pytest_pin="$(grep -E '^pytest==' requirements/test.txt) $(grep -E '^pytest-xdist==' requirements/test.txt)"
[ "${#pins[@]}" -gt 0 ] && [ -n "$pytest_pin" ] || { echo "matrix: no pins"; exit 2; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
declare -A cell
failed=0
run_step() {  # version step command...: run, time, record "pass 1.2s" / "FAIL 1.2s"
    local v=$1 step=$2 t0 rc
    shift 2
    t0=$(now)
    echo "--- ansible-core $v: $step"
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then cell[$v.$step]="ok $(since "$t0")s"; else cell[$v.$step]="FAIL $(since "$t0")s"; failed=1; fi
    echo "--- ansible-core $v: $step: ${cell[$v.$step]}"
    return $rc
}

make_venv() {  # dir pin
    local dir=$1 want="$2 $pytest_pin"
    if [ -x "$dir/bin/ansible-playbook" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$want" ]; then
        echo "reusing $dir ($want)"
        return 0
    fi
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir" && "$dir/bin/pip" install -q $want && echo "$want" > "$dir/.pins"
}

check_claim() {  # python (of the newest venv)
    "$1" - "${pins[@]}" <<'PY'
import glob, sys
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

tested = [Version(p.split("==")[1]) for p in sys.argv[1:]]
minors = sorted({(v.major, v.minor) for v in tested})
with open("meta/runtime.yml") as f:
    claim = SpecifierSet(yaml.safe_load(f)["requires_ansible"])
problems = ["%s: not within requires_ansible %s" % (v, claim) for v in tested if v not in claim]
lo, hi = minors[0], minors[-1]
below, above = Version("%d.%d.99" % (lo[0], lo[1] - 1)), Version("%d.%d.0" % (hi[0], hi[1] + 1))
problems += ["requires_ansible %s admits %s, which the matrix does not test" % (claim, v)
             for v in (below, above) if v in claim]
problems += ["requires_ansible %s admits %d.%d, which the matrix skips" % (claim, 2, m)
             for m in range(lo[1], hi[1] + 1) if (2, m) not in minors]
for path in sorted(glob.glob("roles/*/meta/main.yml")):
    with open(path) as f:
        got = str(yaml.safe_load(f)["galaxy_info"].get("min_ansible_version"))
    if got != "%d.%d" % lo:
        problems.append("%s: min_ansible_version %s, the matrix starts at %d.%d" % (path, got, *lo))
print("requires_ansible %s; tested: %s" % (claim, ", ".join(str(v) for v in tested)))
for p in problems:
    print("claim: " + p)
sys.exit(1 if problems else 0)
PY
}

check_targets() {  # python
    "$1" - <<'PY'
import __future__, ast, glob, sys
from ansible_test._util.target.common.constants import CONTROLLER_PYTHON_VERSIONS, REMOTE_ONLY_PYTHON_VERSIONS

versions = sorted(set(REMOTE_ONLY_PYTHON_VERSIONS + CONTROLLER_PYTHON_VERSIONS),
                  key=lambda s: tuple(map(int, s.split("."))))
oldest = next(v for v in versions if not v.startswith("2."))
low = tuple(map(int, oldest.split(".")))
problems = []
files = sorted(glob.glob("plugins/modules/*.py") + glob.glob("plugins/module_utils/*.py"))
for path in files:
    with open(path) as f:
        text = f.read()
    try:
        tree = ast.parse(text, path, feature_version=low)
    except SyntaxError as exc:
        problems.append("%s:%s: not Python %s: %s" % (path, exc.lineno, oldest, exc.msg))
        continue
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                if feature is not None and feature.optional[:2] > low:
                    problems.append("%s:%d: from __future__ import %s needs Python %d.%d (target %s)"
                                    % (path, node.lineno, alias.name, *feature.optional[:2], oldest))
print("%d files parsed as Python %s (oldest target Python: %s)" % (len(files), oldest, ", ".join(versions)))
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
}

t_all=$(now)
versions=()
for pin in "${pins[@]}"; do
    full=${pin#ansible-core==}
    v=${full%.*}
    versions+=("$v")
    dir=$ROOT/$v
    run_step "$v" venv make_venv "$dir" "$pin" || continue
    bin=$dir/bin
    run_step "$v" targets check_targets "$bin/python"
    run_step "$v" syntax "$bin/ansible-playbook" --syntax-check -i inventories/two_node playbooks/*.yml
    if [ "${MATRIX_UNIT_DONE:-}" = "$full" ]; then
        cell[$v.unit]="make unit"  # `make test` ran them under this very ansible-core already
    else
        run_step "$v" unit "$bin/python" -m pytest -q -p no:cacheprovider $UNIT_XDIST tests/unit
    fi
    run_step "$v" docs env PATH="$PWD/$bin:$PATH" bash tools/render_docs.sh
    run_step "$v" plan "$bin/ansible-playbook" -i inventories/two_node tests/matrix/plan.yml
done
newest=$ROOT/${versions[-1]}/bin/python
t0=$(now)
echo "--- claim"
if check_claim "$newest"; then claim="ok $(since "$t0")s"; else claim="FAIL $(since "$t0")s"; failed=1; fi

echo
steps=(venv targets syntax unit docs plan)
printf '%-13s' "ansible-core"; for s in "${steps[@]}"; do printf '%-13s' "$s"; done; echo
for v in "${versions[@]}"; do
    printf '%-13s' "$v"
    for s in "${steps[@]}"; do printf '%-13s' "${cell[$v.$s]:--}"; done
    echo
done
echo "claim: $claim; matrix wall time $(since "$t_all") s"
exit $failed
