#!/bin/bash
# A/B of the adaptive group commit (BENCHMARKS.md, "Adaptive group commit"):
# one fresh durable node of BIN, loaded by wrk for 4 s at CLIENTS
# connections; prints req/s, wrk's p50, the mean group-commit batch (from
# /metrics) and the node's CPU per request (utime+stime from /proc/PID/stat
# around the run, 100 ticks/s). Run it for each binary in turn, several
# rounds, interleaved. Usage, from the module root:
#   go build -o /tmp/countd-new . ; (git archive main | tar -x -C /tmp/old && cd /tmp/old && go build -o /tmp/countd-old .)
#   for r in 1 2 3; do for c in 8 64; do for v in old new; do docs/bench/pacer-ab.sh /tmp/countd-$v $v $c; done; done; done
# Extra arguments go to countd (e.g. -memory).
set -u
bin=$1; name=$2; c=$3; shift 3; d=$(mktemp -d); trap 'rm -rf $d' EXIT
printf 'wrk.method = "POST"\n' > $d/post.lua
$bin -port 0 -data-dir $d/data "$@" > $d/log 2>&1 & pid=$!
for _ in $(seq 50); do port=$(grep -o 'listen=127.0.0.1:[0-9]*' $d/log | cut -d: -f2); [ -n "$port" ] && break; sleep 0.1; done
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
out=$(wrk -t$(( c<2 ? 1 : 2 )) -c$c -d4s -s $d/post.lua --latency http://127.0.0.1:$port/increment)
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
n=$(echo "$out" | grep -o '[0-9]* requests in' | cut -d' ' -f1)
rps=$(echo "$out" | grep Requests/sec | awk '{print $2}'); p50=$(echo "$out" | grep ' 50%' | awk '{print $2}')
b=$(curl -s http://127.0.0.1:$port/metrics | grep -E '^countd_commit_batch_size_(sum|count)' | awk '{print $2}' | tr '\n' ' ')
kill $pid; wait $pid 2>/dev/null
echo "$name c=$c rps=$rps p50=$p50 batch=$(echo $b | awk '{ if ($2>0) printf "%.1f", $1/$2}') cpu_us/req=$(echo "$t0 $t1 $n" | awk '{printf "%.1f", ($2-$1)*10000/$3}')"
