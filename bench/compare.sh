#!/usr/bin/env bash
# bench/compare.sh - Penstock and Postfix side by side, in one run, on the
# same machine, relaying the same load to the same sink:
#
#   1. bench/postfix-baseline.sh with PHASES="sink relay": the
#      sink's own limit (smtp-source -> smtp-sink), then a Postfix instance
#      relaying N messages of 2 KB from 20 smtp-source sessions to Postfix's
#      smtp-sink on 127.0.0.2:2525 (one warm-up, RUNS measured runs).
#   2. smtp-sink again on 127.0.0.2:2525 with the same flags, and
#      `penstock bench -sink 127.0.0.2:2525 -n N -clients 20 -size 2048`:
#      one warm-up, then RUNS measured runs on the same spool directory
#      (as Postfix runs on its warmed-up queue). Durable spool, delivery log on.
#   3. the medians side by side and the ratio.
#
# Usage (as root: the baseline installs and runs Postfix; run from anywhere):
#   bench/compare.sh                      # N=20000 RUNS=3 SINK_RUNS=3: about 4 minutes
#   N=10000 RUNS=1 SINK_RUNS=1 bench/compare.sh
# Environment: N, RUNS, SINK_RUNS, SINK_N, SESSIONS, MSG_SIZE, OUT (results,
# default /tmp/penstock-compare), BASELINE (path of postfix-baseline.sh),
# RUN_TIMEOUT (seconds per run). N must be a multiple of 100 (the baseline's
# DOMAINS).
#
# Everything is on loopback: Postfix on 127.0.0.1:25 (its own instance, see
# the baseline), the sink on 127.0.0.2:2525, Penstock on 127.0.0.1:<random>.
# What this script starts it stops, by PID. Every wait is bounded.
set -uo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-20000}
RUNS=${RUNS:-3}
SINK_RUNS=${SINK_RUNS:-3}
SINK_N=${SINK_N:-$N}
SESSIONS=${SESSIONS:-20}
MSG_SIZE=${MSG_SIZE:-2048}
SINK_ADDR=127.0.0.2
SINK_PORT=2525
OUT=${OUT:-/tmp/penstock-compare}
BASELINE=${BASELINE:-$ROOT/bench/postfix-baseline.sh}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
QUIET_WAIT=${QUIET_WAIT:-180}   # max seconds to wait for the machine to be idle before each side
QUIET_PCT=${QUIET_PCT:-15}      # "idle": under this % busy over one second

die() { echo "compare: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(( EUID == 0 )) || die "must run as root (the Postfix baseline installs and runs Postfix)"
[[ -r $BASELINE ]] || die "baseline script not found: $BASELINE (set BASELINE=...)"
(( N > 0 && N % 100 == 0 )) || die "N ($N) must be a positive multiple of 100"
(( RUNS > 0 )) || die "RUNS must be positive"
command -v go >/dev/null || die "the Go toolchain is needed to build penstock"
[[ $OUT == /* && $OUT != / ]] || die "OUT must be an absolute path"

rm -rf "$OUT"
mkdir -p "$OUT" || die "cannot create $OUT"
PENSTOCK=$OUT/penstock
SPOOLDIR=$OUT/penstock-spool

log "building penstock"
(cd "$ROOT" && go build -o "$PENSTOCK" ./cmd/penstock) || die "go build failed"

SINK_PID=
cleanup() {
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
    SINK_PID=
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{v[NR]=$1} END{ if (NR==0) {print "nan"; exit}
  if (NR%2) print v[(NR+1)/2]; else printf "%.6f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
# jnum FILE KEY: a number from penstock bench -json output (one key a line)
jnum() { sed -n "s/^ *\"$2\": *\([-0-9.e+]*\),\{0,1\}$/\1/p" "$1" | head -1; }
# r N X: X rounded to N decimals
r() { awk -v d="$1" -v x="$2" 'BEGIN{ if (x == "" || x == "nan") print "nan"; else printf "%.*f", d, x }'; }

# busy% of the whole machine over one second
busy_1s() {
  local a b
  a=$(awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); t=y[2]-x[2]; if (t>0) printf "%.0f", 100*(y[1]-x[1])/t; else print 0}'
}
# Other work on this 2-core machine skews both sides: wait (bounded) until
# it is idle, and say so when it never is.
wait_quiet() {
  local i p
  for (( i = 0; i < QUIET_WAIT; i += 1 )); do
    p=$(busy_1s)
    (( p < QUIET_PCT )) && { log "machine idle (${p}% busy) before $1"; return; }
  done
  log "WARNING: machine still ${p}% busy after ${QUIET_WAIT}s; measuring $1 anyway (figures less reliable)"
}

# ------------------------------------------------------------- 1. Postfix
wait_quiet "the Postfix baseline"
log "Postfix baseline: PHASES='sink relay' N=$N RUNS=$RUNS SINK_RUNS=$SINK_RUNS (log: $OUT/postfix.log)"
N=$N RUNS=$RUNS SINK_RUNS=$SINK_RUNS SINK_N=$SINK_N SESSIONS=$SESSIONS MSG_SIZE=$MSG_SIZE \
  SINK_ADDR=$SINK_ADDR SINK_PORT=$SINK_PORT RUN_TIMEOUT=$RUN_TIMEOUT \
  OUTDIR=$OUT/postfix PHASES="sink relay" bash "$BASELINE" 2>&1 | tee "$OUT/postfix.log" >&2
SUMMARY=$OUT/postfix/summary.txt
[[ -s $SUMMARY ]] || die "the baseline wrote no summary ($SUMMARY); see $OUT/postfix.log"
last=$(tail -1 "$SUMMARY")
PF=$(sed -n 's/.*postfix_relay_msgs_per_s=\([0-9.a-z]*\).*/\1/p' <<<"$last")
SINK_LIMIT=$(sed -n 's/.*sink_limit_msgs_per_s=\([0-9.a-z]*\).*/\1/p' <<<"$last")
SINK_REUSE=$(sed -n "s/^sink_limit\[size=$MSG_SIZE,sessions=$SESSIONS,reuse\]=//p" "$SUMMARY")
PF_CPU=$(awk -F'\t' '$1=="relay"{print $8}' "$OUT/postfix/results.tsv" | median)
[[ $PF =~ ^[0-9.]+$ ]] || die "no Postfix relay figure in $SUMMARY"

# ------------------------------------------------------------ 2. Penstock
PATH=$PATH:/usr/sbin:/sbin
command -v smtp-sink >/dev/null || die "smtp-sink not found (the baseline installs postfix)"
ss -Hltn "src $SINK_ADDR:$SINK_PORT" 2>/dev/null | grep -q . && die "$SINK_ADDR:$SINK_PORT is already in use"
SINK_OUT=$OUT/sink-penstock.out
smtp-sink -c -u nobody "$SINK_ADDR:$SINK_PORT" 1000 >"$SINK_OUT" 2>"$OUT/sink-penstock.err" &
SINK_PID=$!
for _ in $(seq 1 50); do   # bounded: 5 s
  ss -Hltn "src $SINK_ADDR:$SINK_PORT" 2>/dev/null | grep -q . && break
  sleep 0.1
done
ss -Hltn "src $SINK_ADDR:$SINK_PORT" 2>/dev/null | grep -q . || die "smtp-sink did not start (see $OUT/sink-penstock.err)"

sink_count() {  # the last mesg= counter smtp-sink -c wrote
  local c
  c=$(tail -c 100 "$SINK_OUT" 2>/dev/null)
  [[ $c == *mesg=* ]] || { echo 0; return; }
  c=${c##*mesg=}; c=${c%%[!0-9]*}
  echo "${c:-0}"
}

proc_ticks() {  # utime+stime of one pid, 0 if gone
  local l
  l=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  l=${l##*) }
  # shellcheck disable=SC2086
  set -- $l
  echo $(( ${12} + ${13} ))
}
HZ=$(getconf CLK_TCK)

# penstock_run <name>: one run into $OUT/penstock-<name>.json. A run during
# which other processes (smtp-sink's own CPU aside) used more than 15% of
# the machine is measured again, up to 3 times, after waiting for quiet.
penstock_run() {
  local name=$1 try busy
  for try in 1 2 3; do
    penstock_once "$name"
    busy=$(awk -v o="$(jnum "$OUT/penstock-$name.json" other_processes_cpu_s)" -v s="$SINK_CPU" \
      -v e="$(jnum "$OUT/penstock-$name.json" end_to_end_s)" -v n="$(nproc)" \
      'BEGIN{ if (e > 0) printf "%.0f", 100 * (o - s) / (e * n); else print 0 }')
    (( busy <= 15 )) && return
    log "  other processes used ${busy}% of the machine during penstock $name: measuring it again"
    wait_quiet "penstock $name (again)"
  done
  log "WARNING: penstock $name kept being disturbed; its figures are less reliable"
}

penstock_once() {
  local name=$1 c0 c1 rc s0
  s0=$(proc_ticks "$SINK_PID")
  c0=$(sink_count)
  timeout "$RUN_TIMEOUT" "$PENSTOCK" bench -sink "$SINK_ADDR:$SINK_PORT" -n "$N" -clients "$SESSIONS" \
    -size "$MSG_SIZE" -dir "$SPOOLDIR" -timeout "$((RUN_TIMEOUT - 10))s" -json \
    >"$OUT/penstock-$name.json" 2>"$OUT/penstock-$name.err"
  rc=$?
  for _ in $(seq 1 50); do   # smtp-sink updates its counter on "."; bounded: 5 s
    c1=$(sink_count); (( c1 - c0 >= N )) && break; sleep 0.1
  done
  (( rc == 0 )) || log "WARNING: penstock bench exit $rc: $(head -3 "$OUT/penstock-$name.err")"
  (( c1 - c0 == N )) || log "WARNING: smtp-sink counted $((c1 - c0)) of $N"
  SINK_CPU=$(awk -v t="$(( $(proc_ticks "$SINK_PID") - s0 ))" -v hz="$HZ" 'BEGIN{printf "%.2f", t/hz}')
  local j=$OUT/penstock-$name.json
  log "  penstock $name: $(r 0 "$(jnum "$j" end_to_end_msgs_per_s)") msgs/s end-to-end," \
    "injection $(r 0 "$(jnum "$j" inject_msgs_per_s)") msgs/s, penstock cpu $(r 2 "$(jnum "$j" penstock_cpu_s)") s," \
    "sink counted $((c1 - c0)) (smtp-sink cpu ${SINK_CPU} s)"
}

wait_quiet "Penstock"
log "Penstock: warm-up, then $RUNS runs of $N msgs into smtp-sink $SINK_ADDR:$SINK_PORT (spool $SPOOLDIR)"
penstock_run warmup
for run in $(seq 1 "$RUNS"); do penstock_run "run$run"; done
cleanup

pmed() { for run in $(seq 1 "$RUNS"); do jnum "$OUT/penstock-run$run.json" "$1"; done | median; }
PS=$(r 0 "$(pmed end_to_end_msgs_per_s)")
PS_INJ=$(r 0 "$(pmed inject_msgs_per_s)")
PS_CPU=$(r 2 "$(pmed penstock_cpu_s)")
PS_RSS=$(r 0 "$(pmed penstock_peak_rss_mib)")
PS_ACK=$(r 2 "$(pmed inject_ack_p99_ms)")
PS_LAT=$(r 1 "$(pmed delivery_latency_p99_ms)")
PS_OTHER=$(r 2 "$(pmed other_processes_cpu_s)")
RATIO=$(awk -v a="$PS" -v b="$PF" 'BEGIN{ if (b>0) printf "%.1f", a/b; else print "nan"}')

# -------------------------------------------------------------- 3. report
{
  echo "== Penstock vs Postfix, one run: $(date -u +%Y-%m-%dT%H:%M:%SZ) =="
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
  echo "load: N=$N msgs x $MSG_SIZE B, $SESSIONS sessions, medians of $RUNS runs after one warm-up; sink smtp-sink $SINK_ADDR:$SINK_PORT"
  echo "sink limit (smtp-source -> smtp-sink, $SESSIONS sessions, new connection per msg): $SINK_LIMIT msgs/s; reusing connections: ${SINK_REUSE:-n/a} msgs/s"
  printf '%-10s %12s %16s %14s\n' "relay" "msgs/s e2e" "injection msgs/s" "cpu s (median)"
  printf '%-10s %12s %16s %14s\n' "postfix" "$PF" "-" "$PF_CPU"
  printf '%-10s %12s %16s %14s   peak RSS %s MiB, ack p99 %s ms, delivery p99 %s ms\n' "penstock" "$PS" "$PS_INJ" "$PS_CPU" "$PS_RSS" "$PS_ACK" "$PS_LAT"
  echo "cpu of other processes during the Penstock runs (median, smtp-sink included): $PS_OTHER s; Postfix relay runs: machine busy $(awk -F'\t' '$1=="relay"{print $9}' "$OUT/postfix/results.tsv" | median)% (Postfix + smtp-source + smtp-sink + others)"
  echo "ratio penstock/postfix: $RATIO"
  echo "postfix_relay_msgs_per_s=$PF penstock_relay_msgs_per_s=$PS ratio=$RATIO sink_limit_msgs_per_s=$SINK_LIMIT"
} | tee "$OUT/compare.txt"
