#!/bin/bash
# Loads redis-server (no persistence) and this yardstick on gnet, on gnet
# with an owner goroutine, and on redcon; then, with DURABLE=1, also
# redis-server with appendfsync always and gnet's owner with -fsync with redis-benchmark -t incr -c 64, at -P 1 and -P 16, ROUNDS
# times in turn, and prints each one's req/s. Needs redis-server and
# redis-benchmark (Debian: redis-server redis-tools) and Go.
# Usage: yardsticks/eventloop/run.sh   (PORT=17001 ROUNDS=3 N=200000)
set -euo pipefail
cd "$(dirname "$0")"
port=${PORT:-17001} rounds=${ROUNDS:-3} n=${N:-200000}
bin=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/eventloop" .
redis-server --port "$port" --save "" --appendonly no >/dev/null & pids+=($!)
"$bin/eventloop" -lib=gnet -addr="127.0.0.1:$((port + 1))" & pids+=($!)
"$bin/eventloop" -lib=redcon -addr="127.0.0.1:$((port + 2))" & pids+=($!)
"$bin/eventloop" -lib=gnet-owner -addr="127.0.0.1:$((port + 3))" & pids+=($!)
targets="redis:$port gnet:$((port + 1)) gnet-owner:$((port + 3)) redcon:$((port + 2))"
if [ -n "${DURABLE:-}" ]; then
	redis-server --port $((port + 4)) --dir "$bin" --save "" --appendonly yes --appendfsync always >/dev/null & pids+=($!)
	"$bin/eventloop" -lib=gnet-owner -fsync="$bin/yardstick" -addr="127.0.0.1:$((port + 5))" & pids+=($!)
	targets="$targets redis-always:$((port + 4)) gnet-owner-fsync:$((port + 5))"
fi
for t in $targets; do
	p=${t#*:}
	for _ in $(seq 100); do
		redis-cli -p "$p" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
done
for depth in 1 16; do
	for round in $(seq "$rounds"); do
		for t in $targets; do
			rps=$(redis-benchmark -p "${t#*:}" -t incr -c 64 -P "$depth" -n "$n" -q 2>/dev/null |
				tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
			echo "-P $depth round $round ${t%%:*} $rps"
		done
	done
done | awk '{print} {sum[$2" "$5] += $6} END {
	for (d in sum) { split(d, k, " "); if (k[2] == "redis" || k[2] == "redis-always") base[k[1]" "k[2]] = sum[d] }
	for (d in sum) {
		split(d, k, " ")
		of = (k[2] ~ /fsync|always/) ? "redis-always" : "redis"
		printf "-P %s %s: rounds summed %.0f req/s, %.2f of %s\n", k[1], k[2], sum[d], sum[d] / base[k[1]" "of], of | "sort -n -k2"
	}
}'
