#!/usr/bin/env bash
# Checks the ParkMe Helm chart: `helm lint` and `helm template` with the
# default values and every ci/*-values.yaml, then the Go chart tests in
# helm/chart-test (one test per promise of the chart). Exits non-zero on any
# failure. Installs helm with `go install` when it is not found.
#
#   helm/test.sh            # from anywhere
#   HELM=/path/to/helm helm/test.sh
set -euo pipefail

readonly HELM_VERSION=v3.22.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly chart="$here/parkme"
readonly tests="$here/chart-test"

# go install puts binaries in GOBIN, or GOPATH/bin when GOBIN is unset.
go_bin_dir() {
  local gobin
  gobin="$(go env GOBIN)"
  if [[ -n "$gobin" ]]; then echo "$gobin"; else echo "$(go env GOPATH)/bin"; fi
}

find_helm() {
  if [[ -n "${HELM:-}" ]]; then
    [[ -x "$HELM" ]] || { echo "HELM=$HELM is not an executable" >&2; return 1; }
    echo "$HELM"
    return
  fi
  if command -v helm >/dev/null 2>&1; then
    command -v helm
    return
  fi
  local installed
  installed="$(go_bin_dir)/helm"
  if [[ ! -x "$installed" ]]; then
    echo "helm not found: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  fi
  [[ -x "$installed" ]] || { echo "helm is still missing after go install" >&2; return 1; }
  echo "$installed"
}

HELM="$(find_helm)"
export HELM
echo "helm: $HELM ($("$HELM" version --short 2>/dev/null || echo unknown version))"

# Value sets: the defaults, then each ci/ file.
value_sets=("")
for f in "$chart"/ci/*-values.yaml; do value_sets+=("$f"); done

for values in "${value_sets[@]}"; do
  name="${values:+$(basename "$values")}"
  name="${name:-default values}"
  args=()
  [[ -n "$values" ]] && args=(-f "$values")
  "$HELM" lint --strict "$chart" "${args[@]}" >/dev/null ||
    { echo "helm lint failed with $name" >&2; "$HELM" lint --strict "$chart" "${args[@]}" >&2 || true; exit 1; }
  rendered="$("$HELM" template parkme "$chart" "${args[@]}")" ||
    { echo "helm template failed with $name" >&2; exit 1; }
  echo "chart: lint + template ok with $name ($(grep -c '^kind:' <<<"$rendered") manifests)"
done

# The real binary, for the test that runs the backup CronJob's args with it.
if [[ -z "${PARKME_BIN:-}" && -x "$here/../target/debug/parkme" ]]; then
  export PARKME_BIN="$here/../target/debug/parkme"
fi

cd "$tests"
go vet ./...
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
go test -count=1 -v ./... >"$log" 2>&1 || status=$?
# Keep the result lines and any failure messages, drop the === RUN noise.
grep -Ev '^(=== (RUN|PAUSE|CONT)|\s*$)' "$log" | grep -Ev '^\s+--- PASS' || true
passed="$(grep -c '^--- PASS' "$log" || true)"
failed="$(grep -c '^--- FAIL' "$log" || true)"
echo "chart: $passed passed, $failed failed"
if [[ "$status" -ne 0 || "$failed" -ne 0 || "$passed" -eq 0 ]]; then
  echo "chart tests failed (go test exit $status)" >&2
  exit 1
fi
