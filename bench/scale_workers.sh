#!/usr/bin/env bash
# 1 vs 2 gateway processes ("workers") sharing one data dir, with two concurrent
# 4K QD32 random-read sessions (iscsi-perf). See docs/scaling.md.
#   bash bench/scale_workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=$(mktemp -d /dev/shm/iscsigw-scale-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
.venv/bin/iscsigw serve --data-dir "$D" --portal "127.0.0.2:$PORT" --name w1 --demo > "$D/w1.out" 2>&1 &
P1=$!
sleep 2
.venv/bin/iscsigw serve --data-dir "$D" --portal "127.0.0.3:$PORT" --name w2 --demo > "$D/w2.out" 2>&1 &
P2=$!
trap 'kill -INT $P1 $P2 2>/dev/null; wait $P1 $P2 2>/dev/null; rm -rf "$D"' EXIT
sleep 3
U1=$(sed -n 's/iSCSI URL: //p' "$D/w1.out"); U2=$(sed -n 's/iSCSI URL: //p' "$D/w2.out")
perf1() { timeout 20 iscsi-perf -r -m 32 -b 8 -t 8 "$1" 2>&1 | tr '\r' '\n' | grep average | tail -1 | awk '{print $3}'; }
run2() {
  perf1 "$1" > "$D/a" & A=$!
  perf1 "$2" > "$D/b" & B=$!
  wait $A $B
  echo "$(cat "$D/a") + $(cat "$D/b") = $(( $(cat "$D/a") + $(cat "$D/b") ))"
}
for _ in 1 2; do
  echo -n "1 worker,  2 sessions: "; run2 "$U1" "$U1"
  echo -n "2 workers, 2 sessions: "; run2 "$U1" "$U2"
done
echo -n "1 worker,  1 session:  "; perf1 "$U1"
