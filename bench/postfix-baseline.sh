#!/usr/bin/env bash
# (The project's own copy: bench/compare.sh runs it; nothing outside the repository is needed.)
# postfix-baseline.sh - reproducible, loopback-only performance baseline for
# outbound relaying with Postfix, used as the anchor a new MTA is compared to.
#
#   smtp-source --> Postfix smtpd 127.0.0.1:25 --(durable queue)--> smtp client
#               --> smtp-sink 127.0.0.2:2525 (accepts and discards)
#
# Phases (PHASES, space separated, default "sink relay multidomain faults"):
#   sink         smtp-source straight into smtp-sink: the physical limit of the
#                machine for SMTP over loopback (2 KB / 20 KB, 1 / 20 sessions,
#                plus 2 KB / 20 sessions reusing connections with -d).
#   relay        N messages of ~2 KB, 20 sessions, into Postfix; end-to-end
#                time until the sink has received all N.
#   multidomain  same, but recipients spread over DOMAINS distinct domains
#                (all relayed to the same sink via relayhost), with -N.
#   faults       checks smtp-sink's failure-injection flags with swaks.
#
# Postfix runs as a separate instance with its own config/queue under $BASE
# (postfix -c $BASE/etc); /etc/postfix is not touched.  Everything this script
# starts is stopped on exit, by PID (and "postfix -c ... stop").
#
# Safety: every address used must be in 127.0.0.0/8; every wait is bounded.
# Needs root (Postfix, apt-get, smtp-sink -u).  Prints at the end:
#   postfix_relay_msgs_per_s=<median> sink_limit_msgs_per_s=<median>
set -uo pipefail

# ---------------------------------------------------------------- parameters
N=${N:-20000}                       # messages per relay run
RUNS=${RUNS:-3}                     # relay / multidomain runs
SINK_RUNS=${SINK_RUNS:-5}           # runs per sink-limit configuration
SINK_N=${SINK_N:-20000}             # messages per sink-limit run
SESSIONS=${SESSIONS:-20}            # parallel smtp-source sessions
MSG_SIZE=${MSG_SIZE:-2048}          # payload bytes for the relay phases
DOMAINS=${DOMAINS:-100}             # distinct recipient domains (multidomain)
CONCURRENCY=${CONCURRENCY:-20}      # default_destination_concurrency_limit
WARMUP=${WARMUP:-$N}                # relayed once, unmeasured: the first run on a fresh
                                    # spool is ~30% faster than steady state
SINK_ADDR=${SINK_ADDR:-127.0.0.2}
SINK_PORT=${SINK_PORT:-2525}
RELAY_ADDR=${RELAY_ADDR:-127.0.0.1}
RELAY_PORT=${RELAY_PORT:-25}
FAULT_ADDR=${FAULT_ADDR:-127.0.0.3} # throw-away sinks of the faults phase
RUN_TIMEOUT=${RUN_TIMEOUT:-600}     # max seconds for any single measurement
BASE=${BASE:-/var/lib/postfix-baseline}
OUTDIR=${OUTDIR:-/tmp/postfix-baseline}
PHASES=${PHASES:-"sink relay multidomain faults"}
FROM=${FROM:-sender@example.test}
RCPT=${RCPT:-rcpt@example.test}

CONF=$BASE/etc
QUEUE=$BASE/spool
DATA=$BASE/data
LOGDIR=$BASE/log
export LC_ALL=C

die() { echo "postfix-baseline: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

is_loopback() { [[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] &&
  (( BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 )); }
for a in "$SINK_ADDR" "$RELAY_ADDR" "$FAULT_ADDR"; do
  is_loopback "$a" || die "address $a is not in 127.0.0.0/8; refusing"
done
[[ $SINK_ADDR != "$FAULT_ADDR" ]] || die "FAULT_ADDR must differ from SINK_ADDR"
(( EUID == 0 )) || die "must run as root"
(( N % DOMAINS == 0 )) || die "N ($N) must be a multiple of DOMAINS ($DOMAINS)"
[[ $BASE == /* && $BASE != / ]] || die "BASE must be an absolute path"

# ------------------------------------------------------------------ install
need_install=0
for c in postfix postconf postsuper smtp-sink smtp-source swaks; do
  command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$c" >/dev/null 2>&1 || need_install=1
done
if (( need_install )); then
  log "installing postfix and swaks"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix swaks >/dev/null ||
    die "apt-get install failed"
fi
for c in postfix postconf postsuper smtp-sink smtp-source swaks; do
  command -v "$c" >/dev/null 2>&1 || die "$c not found after install"
done

mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
RESULTS=$OUTDIR/results.tsv
printf 'phase\tconfig\trun\tmessages\tseconds\tmsgs_per_s\taccept_seconds\tpostfix_cpu_s\tmachine_busy_pct\tsource_cpu_s\tsink_cpu_s\n' >"$RESULTS"

# ------------------------------------------------------------------ cleanup
SINK_PID=
FAULT_PID=
POSTFIX_STARTED=0
cleanup() {
  local p
  for p in $FAULT_PID $SINK_PID; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if (( POSTFIX_STARTED )); then
    postfix -c "$CONF" stop >/dev/null 2>&1
    # postfix stop waits for master to exit; make sure of it, bounded
    for _ in $(seq 1 50); do
      [[ -s $QUEUE/pid/master.pid ]] || break
      kill -0 "$(tr -d ' ' <"$QUEUE/pid/master.pid")" 2>/dev/null || break
      sleep 0.1
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ helpers
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a-b}'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print "nan"}'; }
median() { sort -g | awk '{v[NR]=$1} END{ if (NR==0) {print "nan"; exit}
  if (NR%2) print v[(NR+1)/2]; else printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2 }'; }

# last "mesg=" counter an smtp-sink -c has written to its output file
# (one process per call: it is polled while Postfix competes for the 2 cores)
sink_count() {
  local c
  c=$(tail -c 100 "$1" 2>/dev/null)
  [[ $c == *mesg=* ]] || { echo 0; return; }
  c=${c##*mesg=}; c=${c%%[!0-9]*}
  echo "${c:-0}"
}

# start smtp-sink with counters; sets SINK_PID, SINK_OUT
start_sink() {
  SINK_OUT=$OUTDIR/sink-$1.out
  : >"$SINK_OUT"
  smtp-sink -c -u nobody "$SINK_ADDR:$SINK_PORT" 1000 >"$SINK_OUT" 2>"$OUTDIR/sink-$1.err" &
  SINK_PID=$!
  local i
  for i in $(seq 1 50); do   # wait until it listens (bounded: 5 s)
    ss -Hltn "src $SINK_ADDR:$SINK_PORT" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  die "smtp-sink did not start on $SINK_ADDR:$SINK_PORT (see $OUTDIR/sink-$1.err)"
}
stop_sink() { [[ -n $SINK_PID ]] && { kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; SINK_PID=; }; }

proc_ticks() {  # utime+stime+cutime+cstime of one pid, 0 if gone
  local l
  l=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  l=${l##*) }
  # shellcheck disable=SC2086
  set -- $l
  echo $(( ${12} + ${13} + ${14} + ${15} ))
}
# CPU ticks of the whole Postfix instance: live children, then master (whose
# cutime/cstime hold every child it has already reaped)
postfix_ticks() {
  local m t=0 p
  m=$(tr -d ' ' <"$QUEUE/pid/master.pid" 2>/dev/null) || { echo 0; return; }
  for p in $(ps -o pid= --ppid "$m"); do t=$(( t + $(proc_ticks "$p") )); done
  echo $(( t + $(proc_ticks "$m") ))
}
# /proc/stat "cpu" line: busy (user nice system irq softirq steal) and total ticks
machine_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
busy_pct() { awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" 'BEGIN{ if (t1>t0) printf "%.0f", 100*(b1-b0)/(t1-t0); else print "nan"}'; }
HZ=$(getconf CLK_TCK)
ticks2s() { awk -v t="$1" -v hz="$HZ" 'BEGIN{printf "%.2f", t/hz}'; }

queue_count() { find "$QUEUE"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l; }

# ------------------------------------------------------------- phase: sink
phase_sink() {
  log "phase sink: smtp-source -> smtp-sink $SINK_ADDR:$SINK_PORT, $SINK_N msgs x $SINK_RUNS runs per config"
  local cfg size sess extra run c0 c1 t0 t1 el tm m0 m1 mt0 mt1 s0 s1
  start_sink limit
  for cfg in "2048 1" "2048 20" "20480 1" "20480 20" "2048 20 -d"; do
    # shellcheck disable=SC2086
    set -- $cfg; size=$1; sess=$2; extra=${3:-}
    for run in $(seq 1 "$SINK_RUNS"); do
      c0=$(sink_count "$SINK_OUT"); s0=$(proc_ticks "$SINK_PID"); read -r m0 mt0 < <(machine_ticks)
      t0=$(now)
      # shellcheck disable=SC2086
      tm=$( { TIMEFORMAT='%U %S'; time timeout "$RUN_TIMEOUT" smtp-source $extra -l "$size" \
              -m "$SINK_N" -s "$sess" -f "$FROM" -t "$RCPT" "$SINK_ADDR:$SINK_PORT" \
              >/dev/null 2>"$OUTDIR/source.err"; } 2>&1 ) || die "smtp-source failed ($cfg): $(head -3 "$OUTDIR/source.err")"
      t1=$(now); el=$(fsub "$t1" "$t0")
      read -r m1 mt1 < <(machine_ticks); s1=$(proc_ticks "$SINK_PID")
      # the sink's counter is updated on ".", allow a moment for the last ones
      for _ in $(seq 1 50); do
        c1=$(sink_count "$SINK_OUT"); (( c1 - c0 >= SINK_N )) && break; sleep 0.1
      done
      (( c1 - c0 == SINK_N )) || log "WARNING: sink counted $((c1 - c0)) of $SINK_N"
      printf 'sink\tsize=%s,sessions=%s%s\t%s\t%s\t%s\t%s\t\t\t%s\t%s\t%s\n' "$size" "$sess" \
        "${extra:+,reuse}" "$run" "$((c1 - c0))" "$el" "$(rate "$((c1 - c0))" "$el")" \
        "$(busy_pct "$m0" "$mt0" "$m1" "$mt1")" \
        "$(awk -v u="${tm% *}" -v s="${tm#* }" 'BEGIN{printf "%.2f", u+s}')" \
        "$(ticks2s $((s1 - s0)))" >>"$RESULTS"
      log "  sink size=$size sessions=$sess $extra run $run: $((c1 - c0)) msgs in ${el}s = $(rate "$((c1 - c0))" "$el")/s"
    done
  done
  stop_sink
}

# ------------------------------------------------------- postfix instance
setup_postfix() {
  log "configuring Postfix instance in $BASE (relay $RELAY_ADDR:$RELAY_PORT -> [$SINK_ADDR]:$SINK_PORT)"
  if [[ -s $QUEUE/pid/master.pid ]] && kill -0 "$(tr -d ' ' <"$QUEUE/pid/master.pid")" 2>/dev/null; then
    postfix -c "$CONF" stop >/dev/null 2>&1
  fi
  rm -rf "$CONF" "$QUEUE" "$DATA" "$LOGDIR"
  mkdir -p "$CONF" "$QUEUE" "$DATA" "$LOGDIR"
  chmod 755 "$BASE" "$CONF" "$QUEUE" "$LOGDIR"
  chown postfix "$DATA"    # mail_owner; master.lock lives here
  : >"$CONF/main.cf"
  postconf -c "$CONF" -e \
    "compatibility_level = 3.6" \
    "queue_directory = $QUEUE" \
    "data_directory = $DATA" \
    "myhostname = relay.baseline.test" \
    "mydomain = baseline.test" \
    "myorigin = \$myhostname" \
    "mydestination =" \
    "local_transport = error:5.1.1 local delivery is disabled" \
    "alias_maps =" "alias_database =" \
    "inet_interfaces = loopback-only" \
    "inet_protocols = ipv4" \
    "mynetworks = 127.0.0.0/8" \
    "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination" \
    "relayhost = [$SINK_ADDR]:$SINK_PORT" \
    "default_destination_concurrency_limit = $CONCURRENCY" \
    "smtp_tls_security_level = none" \
    "biff = no" \
    "maillog_file = $LOGDIR/postfix.log" \
    "maillog_file_prefixes = $LOGDIR" ||
    die "postconf failed"
  # upstream default master.cf services (chroot off, as upstream defaults to),
  # smtpd bound to RELAY_ADDR:RELAY_PORT only
  cat >"$CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
$RELAY_ADDR:$RELAY_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  postfix -c "$CONF" check >"$OUTDIR/postfix-check.log" 2>&1 || die "postfix check failed: $(cat "$OUTDIR/postfix-check.log")"
  postconf -c "$CONF" -n >"$OUTDIR/main.cf.effective"
  cp "$CONF/master.cf" "$OUTDIR/master.cf"
}

start_postfix() {
  ss -Hltn "src $RELAY_ADDR:$RELAY_PORT" | grep -q . && die "$RELAY_ADDR:$RELAY_PORT already in use"
  postfix -c "$CONF" start >"$OUTDIR/postfix-start.log" 2>&1 || die "postfix start failed: $(cat "$OUTDIR/postfix-start.log")"
  POSTFIX_STARTED=1
  local i
  for i in $(seq 1 100); do
    ss -Hltn "src $RELAY_ADDR:$RELAY_PORT" | grep -q . && return 0
    sleep 0.1
  done
  die "postfix is not listening on $RELAY_ADDR:$RELAY_PORT"
}

# inject $2 messages with command "$3..." and wait until the sink has them all
# usage: relay_run <phase> <config> <run> <n> <inject command...>
relay_run() {
  local phase=$1 cfg=$2 run=$3 n=$4; shift 4
  local c0 c1 t0 t1 ta el p0 p1 m0 m1 mt0 mt1 s0 s1 tm rc deadline
  (( $(queue_count) == 0 )) || { log "queue not empty before run, deleting"; postsuper -c "$CONF" -d ALL >/dev/null 2>&1; }
  c0=$(sink_count "$SINK_OUT"); p0=$(postfix_ticks); read -r m0 mt0 < <(machine_ticks); s0=$(proc_ticks "$SINK_PID")
  t0=$(now)
  ( TIMEFORMAT='%U %S'; { time timeout "$RUN_TIMEOUT" "$@" >/dev/null 2>"$OUTDIR/source.err"; } 2>"$OUTDIR/source.time"
    echo $? >"$OUTDIR/source.rc"; now >"$OUTDIR/source.end" ) &
  local inj=$!
  deadline=$(awk -v t="$t0" -v d="$RUN_TIMEOUT" 'BEGIN{printf "%d", t+d}')
  while :; do
    c1=$(sink_count "$SINK_OUT")
    (( c1 - c0 >= n )) && break
    (( EPOCHSECONDS < deadline )) || { log "TIMEOUT: sink has $((c1 - c0)) of $n"; break; }
    sleep 0.05
  done
  t1=$(now); read -r m1 mt1 < <(machine_ticks)
  wait "$inj"
  rc=$(cat "$OUTDIR/source.rc"); ta=$(fsub "$(cat "$OUTDIR/source.end")" "$t0")
  (( rc == 0 )) || log "WARNING: injector exit $rc: $(head -3 "$OUTDIR/source.err")"
  p1=$(postfix_ticks); s1=$(proc_ticks "$SINK_PID")
  tm=$(cat "$OUTDIR/source.time")
  el=$(fsub "$t1" "$t0")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$cfg" "$run" "$((c1 - c0))" "$el" \
    "$(rate "$((c1 - c0))" "$el")" "$ta" "$(ticks2s $((p1 - p0)))" \
    "$(busy_pct "$m0" "$mt0" "$m1" "$mt1")" \
    "$(awk -v u="${tm% *}" -v s="${tm#* }" 'BEGIN{printf "%.2f", u+s}')" "$(ticks2s $((s1 - s0)))" >>"$RESULTS"
  log "  $phase run $run: $((c1 - c0)) msgs end-to-end in ${el}s = $(rate "$((c1 - c0))" "$el")/s (accepted in ${ta}s; postfix cpu $(ticks2s $((p1 - p0)))s)"
  # let the last deliveries finish and check nothing is left in the queue
  for _ in $(seq 1 100); do (( $(queue_count) == 0 )) && break; sleep 0.1; done
  (( $(queue_count) == 0 )) || log "WARNING: $(queue_count) files left in queue after run"
}

inject_single() {  # N msgs, SESSIONS sessions, one recipient domain
  smtp-source -l "$MSG_SIZE" -m "$1" -s "$SESSIONS" -f "$FROM" -t "$RCPT" "$RELAY_ADDR:$RELAY_PORT"
}
inject_multidomain() {  # N msgs over DOMAINS domains, SESSIONS concurrent sessions
  local per=$(( $1 / DOMAINS ))
  seq 0 $((DOMAINS - 1)) | xargs -P "$SESSIONS" -I{} smtp-source -N -l "$MSG_SIZE" -m "$per" -s 1 \
    -f "$FROM" -t "rcpt@d{}.example.test" "$RELAY_ADDR:$RELAY_PORT"
}
export -f inject_single inject_multidomain
export MSG_SIZE SESSIONS FROM RCPT RELAY_ADDR RELAY_PORT DOMAINS

phase_relay() {
  local run
  log "phase relay: $N msgs x $RUNS runs, ${MSG_SIZE} B, $SESSIONS sessions -> $RELAY_ADDR:$RELAY_PORT -> sink"
  for run in $(seq 1 "$RUNS"); do
    relay_run relay "size=$MSG_SIZE,sessions=$SESSIONS,domains=1" "$run" "$N" bash -c 'inject_single "$0"' "$N"
  done
}
phase_multidomain() {
  local run
  log "phase multidomain: $N msgs over $DOMAINS domains x $RUNS runs"
  for run in $(seq 1 "$RUNS"); do
    relay_run multidomain "size=$MSG_SIZE,sessions=$SESSIONS,domains=$DOMAINS,-N" "$run" "$N" bash -c 'inject_multidomain "$0"' "$N"
  done
}

# ------------------------------------------------------------ phase: faults
# One throw-away sink per case on FAULT_ADDR; swaks shows what a client sees.
fault_case() {  # fault_case <expected substring> <smtp-sink flags...>
  local want=$1; shift
  smtp-sink -u nobody "$@" "$FAULT_ADDR:$SINK_PORT" 10 >/dev/null 2>&1 &
  FAULT_PID=$!
  for _ in $(seq 1 50); do ss -Hltn "src $FAULT_ADDR:$SINK_PORT" | grep -q . && break; sleep 0.1; done
  local got t0 el ok=FAIL
  t0=$(now)
  got=$(timeout 20 swaks --server "$FAULT_ADDR:$SINK_PORT" --from "$FROM" --to "$RCPT" \
        --helo client.baseline.test --timeout 10 2>&1 | grep -E '^(<\*\*|\*\*\*)' | head -2 | tr '\n' ' ')
  el=$(fsub "$(now)" "$t0")
  kill "$FAULT_PID" 2>/dev/null; wait "$FAULT_PID" 2>/dev/null; FAULT_PID=
  [[ -z $want && -z $got || -n $want && $got == *"$want"* ]] && ok=ok
  printf '%-4s %5ss  smtp-sink %-70s => %s\n' "$ok" "$el" "$(printf '%q ' "$@")" "${got:-all 2xx/3xx}" |
    tee -a "$OUTDIR/faults.txt" >&2
}
phase_faults() {
  log "phase faults: smtp-sink failure-injection flags on $FAULT_ADDR:$SINK_PORT"
  : >"$OUTDIR/faults.txt"
  fault_case "451 4.7.1" -r RCPT -b "451 4.7.1 Try again later"      # throttling MX (soft, per RCPT)
  fault_case "421 4.0.0" -Q RCPT                                       # 421 + disconnect after RCPT
  fault_case "421 4.0.0" -Q CONNECT                                    # 421 greeting + disconnect
  fault_case "550 5.1.1" -f RCPT -B "550 5.1.1 <$RCPT>: Recipient address rejected: User unknown"
  fault_case "closed" -q DATA                                          # silent disconnect
  fault_case "450 4.3.0" -r .                                          # defer after the body
  fault_case "" -W RCPT:1                                              # 1 s delay before RCPT reply
}

# --------------------------------------------------------------------- main
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)  cpus: $(nproc)  $(grep -m1 'model name' /proc/cpuinfo)"
  echo "os: $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "postfix: $(dpkg-query -W -f='${Version}' postfix 2>/dev/null)  swaks: $(dpkg-query -W -f='${Version}' swaks 2>/dev/null)"
  echo "params: N=$N RUNS=$RUNS WARMUP=$WARMUP SINK_N=$SINK_N SINK_RUNS=$SINK_RUNS SESSIONS=$SESSIONS MSG_SIZE=$MSG_SIZE DOMAINS=$DOMAINS CONCURRENCY=$CONCURRENCY"
  echo "queue fs: $(df -PT "$(dirname "$BASE")" | awk 'NR==2{print $1, $2}')"
} | tee "$OUTDIR/env.txt" >&2

for ph in $PHASES; do
  case $ph in
    sink) phase_sink ;;
    relay|multidomain)
      if [[ -z ${POSTFIX_UP:-} ]]; then
        setup_postfix; start_sink relay; start_postfix; POSTFIX_UP=1
        log "warm-up: $WARMUP msgs"
        relay_run warmup "size=$MSG_SIZE" 1 "$WARMUP" bash -c 'inject_single "$0"' "$WARMUP"
      fi
      "phase_$ph" ;;
    faults) phase_faults ;;
    *) die "unknown phase $ph" ;;
  esac
done
# the fault phase may have run after postfix: no-op if already stopped
cleanup; trap - EXIT
POSTFIX_STARTED=0

# ------------------------------------------------------------------ summary
med() { awk -F'\t' -v p="$1" -v c="$2" '$1==p && (c=="" || $2==c){print $6}' "$RESULTS" | median; }
medcol() { awk -F'\t' -v p="$1" -v col="$2" '$1==p{print $col}' "$RESULTS" | sort -g |
  awk '{v[NR]=$1} END{ if (NR==0) {print "nan"; exit} print (NR%2)? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2 }'; }
{
  echo "# medians (msgs/s) from $RESULTS"
  for c in $(awk -F'\t' '$1=="sink"{print $2}' "$RESULTS" | sort -u); do
    echo "sink_limit[$c]=$(med sink "$c")"
  done
  for p in relay multidomain; do
    grep -q "^$p	" "$RESULTS" || continue
    echo "${p}_msgs_per_s=$(med "$p" "") ${p}_postfix_cpu_s=$(medcol "$p" 8) ${p}_machine_busy_pct=$(medcol "$p" 9) ${p}_accept_s=$(medcol "$p" 7)"
  done
  echo "postfix_relay_msgs_per_s=$(med relay "") sink_limit_msgs_per_s=$(med sink "size=$MSG_SIZE,sessions=$SESSIONS")"
} | tee "$OUTDIR/summary.txt"
