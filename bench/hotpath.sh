#!/usr/bin/env bash
# bench/hotpath.sh - the hot-path Go benchmarks, the no-regression set of
# BENCHMARKS.md: spool append/update/body read, scheduler pick (push+claim)
# at 10k-1M jobs and 1-10,000 sites, quota checks at 10-10,000 keys, MX rule
# match, SMTP client send and a one-message connection, a new domain's
# DNS lookups, SMTP injection, delivery log write, body pipeline
# build, the TLS status board at a full table.
#
# Usage: bench/hotpath.sh [OUT]      (default OUT: /tmp/penstock-hotpath.txt)
#   COUNT=6 (runs of each benchmark, for benchstat), BENCHTIME=1s
# It prints benchstat's summary when benchstat is installed
# (go install golang.org/x/perf/cmd/benchstat@latest; not a module dependency).
# To check for a regression: keep the OUT of the reference commit and run
#   benchstat old.txt new.txt
# Everything runs on loopback; each go test is bounded by -timeout.
set -uo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-/tmp/penstock-hotpath.txt}
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}

# package  benchmark regexp
SET=(
  "./spool/      ^Benchmark(PutParallel|Update|Body)$"
  "./queue/      ^Benchmark(Schedule|ScheduleFresh|EnqueueClaim)$"
  "./quota/      ^Benchmark(TryConn|TakeMessage|TryConnKeys|TakeMessageKeys)$"
  "./mxrule/     ^BenchmarkMatch$"
  "./smtpclient/ ^Benchmark(Send|SendChunked|DialSendQuit)$"
  "./dns/        ^BenchmarkLookup$"
  "./smtpserver/ ^BenchmarkInjectPipelined$"
  "./events/     ^BenchmarkWrite$"
  "./message/    ^BenchmarkBuildSingle$"
  "./tlsstatus/  ^BenchmarkSetDomainFull$"
)

cd "$ROOT" || exit 1
: >"$OUT"
for entry in "${SET[@]}"; do
  read -r pkg re <<<"$entry"
  echo "[$(date +%H:%M:%S)] $pkg $re" >&2
  go test -run '^$' -bench "$re" -benchmem -count "$COUNT" -benchtime "$BENCHTIME" -timeout 30m "$pkg" >>"$OUT" ||
    echo "WARNING: $pkg failed" >&2
done
BS=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")
if [[ -x $BS ]]; then
  "$BS" "$OUT"
else
  echo "benchstat not found; raw results in $OUT" >&2
fi
