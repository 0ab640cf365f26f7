#!/usr/bin/env bash
# Builds the history checker to OUT (made absolute); with --test, runs its Go
# tests first. Needs Go >= 1.19; porcupine comes from the Go module proxy.
#
#   tools/lincheck/build.sh [--test] OUT
set -euo pipefail
test=no
if [[ "${1:-}" == --test ]]; then test=yes; shift; fi
out="${1:?usage: tools/lincheck/build.sh [--test] OUT}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
for d in /usr/local/go/bin "$HOME/go/bin"; do
  [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"
done
command -v go >/dev/null || { echo "build.sh: go not found (Go >= 1.19 is needed)" >&2; exit 1; }
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ "$test" == yes ]]; then
  go test -buildvcs=false ./...
fi
mkdir -p "$(dirname "$out")"
go build -buildvcs=false -o "$out" .
