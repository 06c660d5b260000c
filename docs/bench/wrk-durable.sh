#!/bin/bash
# wrk cross-check of durable writes (BENCHMARKS.md, "Durable writes with the
# write-ahead log"): the bare server and the fsync yardstick (countd-bench's
# child modes), countd -memory and durable, and an older countd durable, 1
# and 3 nodes, all up at once, driven in interleaved 5 s rounds at 64, 8 and
# 1 clients. Usage, from the module root:
#   go build -o /tmp/wb/countd-new . && go build -o /tmp/wb/countd-bench ./cmd/countd-bench
#   (git archive OLD | tar -x -C /tmp/wb/old && cd /tmp/wb/old && go build -o /tmp/wb/countd-old .)
#   docs/bench/wrk-durable.sh /tmp/wb
set -u
B=${1:?directory with countd-new, countd-old and countd-bench}; W=$B/run; rm -rf $W; mkdir -p $W
printf 'wrk.method = "POST"\n' > $B/post.lua
pids=()
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
yard() { # name args...
  local n=$1; shift; mkfifo $W/$n.in; exec {fd}<>$W/$n.in
  $B/countd-bench "$@" < $W/$n.in > $W/$n.addr 2>$W/$n.err & pids+=($!)
  while [ ! -s $W/$n.addr ]; do sleep 0.1; done; eval "ADDR_$n=$(head -1 $W/$n.addr)"
}
cluster() { # name bin nodes extra...
  local n=$1 bin=$2 k=$3; shift 3; local ps=() i peers=""
  for i in $(seq $k); do ps+=($(port)); done
  for i in $(seq 0 $((k-1))); do
    peers=$(for p in "${ps[@]}"; do [ $p != ${ps[$i]} ] && echo -n "127.0.0.1:$p,"; done); peers=${peers%,}
    $bin -port=${ps[$i]} -data-dir=$W/$n-$i ${peers:+-peers=$peers} "$@" >$W/$n-$i.log 2>&1 & pids+=($!)
  done
  for i in $(seq 0 $((k-1))); do until curl -sf -o /dev/null 127.0.0.1:${ps[$i]}/health 2>/dev/null || curl -sf -o /dev/null 127.0.0.1:${ps[$i]}/counters; do sleep 0.2; done; done
  eval "ADDR_$n=127.0.0.1:${ps[0]}"
}
yard bare -bare-server
yard fsync -fsync-server=$W/yardstick
cluster mem1 $B/countd-new 1 -memory
cluster dur1 $B/countd-new 1
cluster old1 $B/countd-old 1
cluster mem3 $B/countd-new 3 -memory
cluster dur3 $B/countd-new 3
cluster old3 $B/countd-old 3
sleep 3
run() { # clients rounds servers...
  local c=$1 r=$2; shift 2
  for round in $(seq $r); do for s in "$@"; do
    eval a=\$ADDR_$s
    t=$([ $c -ge 2 ] && echo 2 || echo 1)
    out=$(wrk -t$t -c$c -d5s --latency -s $B/post.lua http://$a/increment 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}'); p50=$(echo "$out" | awk '$1=="50%"{print $2}'); p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    non=$(echo "$out" | awk '/Non-2xx/{print $NF}')
    echo "c=$c round=$round $s rps=$rps p50=$p50 p99=$p99 non2xx=${non:-0}"
  done; done
}
run 64 3 bare fsync mem1 dur1 old1 mem3 dur3 old3
run 8 2 bare fsync mem1 dur1 old1
run 1 2 bare fsync mem1 dur1 old1
for p in "${pids[@]}"; do kill $p; done; wait
