#!/usr/bin/env bash
# Render the kustomize base and every overlay, then check each rendered object
# offline: custom resources (Strimzi, KEDA, KubeRay, Prometheus Operator)
# against their CRDs' schemas with crds/validate.mjs (schemas from the npm
# registry and the Go module proxy: crds/package.json, crds/validate.mjs), the
# built-in kinds against the Kubernetes JSON schemas bundled in
# kubernetes-validate. Strict: unknown fields fail (custom resources too:
# see crds/validate.mjs), and so does a kind nothing has a schema for.
#
#   deploy/k8s/validate.sh
#   KUBERNETES_VALIDATE=.venv/bin/kubernetes-validate deploy/k8s/validate.sh
#
# Needs Node.js 18+ with npm (installs crds/node_modules from the lock file on
# first use) and Go (downloads KubeRay's operator module once).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
validator="${KUBERNETES_VALIDATE:-kubernetes-validate}"
# Must be a version whose schemas kubernetes-validate ships (1.25 .. 1.37 in
# 1.37.0); 1.32 matches the kubectl client used to render.
k8s_version="1.32.0"

# Render with kubectl's built-in kustomize, or a standalone `kustomize` when kubectl is absent.
if command -v kubectl >/dev/null 2>&1; then
  render() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null 2>&1; then
  render() { kustomize build "$1"; }
else
  echo "ERROR: neither kubectl nor kustomize found to render the manifests." >&2
  echo "       Install kubectl, or: go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0" >&2
  exit 1
fi
if ! command -v "$validator" >/dev/null 2>&1; then
  echo "ERROR: '$validator' not found: 'pip install kubernetes-validate'," >&2
  echo "       or set KUBERNETES_VALIDATE=/path/to/kubernetes-validate." >&2
  exit 1
fi

for tool in node npm go; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "ERROR: '$tool' not found: the custom resources' schemas come from npm (Node.js 18+) and the Go module proxy." >&2
    exit 1
  fi
done
crds="$here/crds"
# Install the pinned schema packages when the lock file is newer than the install.
if [[ ! -f "$crds/node_modules/.package-lock.json" || "$crds/package-lock.json" -nt "$crds/node_modules/.package-lock.json" ]]; then
  npm ci --prefix "$crds" --no-audit --no-fund --loglevel=error >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
status=0
for dir in "$here/base" "$here"/overlays/*/; do
  dir="${dir%/}"
  name="${dir#"$here"/}"
  rendered="$work/${name//\//_}.yaml"

  if ! render "$dir" >"$rendered" 2>"$work/stderr"; then
    echo "FAIL $name: kubectl kustomize failed:" >&2
    cat "$work/stderr" >&2
    status=1
    continue
  fi

  # Custom resources against their CRDs; the rest goes on to kubernetes-validate.
  builtins="$work/${name//\//_}.builtins.yaml"
  if ! custom="$(node "$crds/validate.mjs" "$rendered" "$builtins" 2>&1)"; then
    echo "FAIL $name:" >&2
    echo "$custom" >&2
    status=1
    continue
  fi

  # --quiet prints only problems; kubernetes-validate exits 0 on a missing
  # schema (a WARN line), so any output at all counts as a failure.
  if report="$("$validator" --strict --quiet -k "$k8s_version" "$builtins" 2>&1)" && [[ -z "$report" ]]; then
    echo "OK   $name: $(grep -c '^kind:' "$rendered") objects: ${custom##*$'\n'}, the others valid against Kubernetes $k8s_version (strict)"
  else
    echo "FAIL $name:" >&2
    report="${report//"$builtins"/"$name"}" # name the rendering, not the temp file
    echo "${report:-kubernetes-validate failed without output}" >&2
    status=1
  fi
done

exit "$status"
