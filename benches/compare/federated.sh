#!/usr/bin/env bash
# Job 1's performance figures, from one run of each side:
#  - embedded (`shoal local`, every role a thread): the per-round overhead, i.e. round time minus the
#    slowest child's local training minus the master's evaluation, as a share of round time;
#  - the same job as processes over tcp 127.0.0.1 (`shoal master` + one `shoal worker` per child): its
#    wall time against the embedded run's.
# 8 image children, all training every round (C = 1), E = 1, B = 10, 20 rounds, evaluation after the last;
# the default private heads (common init, no warm-up).
# Usage: benches/compare/federated.sh [ROUNDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rounds="${1:-20}"
cargo build --release -q -p shoal
shoal="$root/target/release/shoal"
data="${SHOAL_DATA:-$root/data}"
"$shoal" data fetch --data-dir "$data" > /dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

job() { # $1: name, $2: endpoint
  cat > "$work/$1.toml" <<EOF
job = "bench-$1"
seed = 1
[encoder]
type = "image28x28"
hidden = [200, 200]
[training]
rounds = $rounds
local_epochs = 1
batch = 10
lr = 0.1
fraction = 1.0
min_children = 8
[children]
count = 8
tabular = 0
[deadlines]
join_ms = 60000
round_ms = 600000
[transport]
endpoint = "$2"
[eval]
every = $rounds
EOF
}

now() { date +%s.%N; }

job embedded "inproc://bench-embedded"
t0="$(now)"
"$shoal" local "$work/embedded.toml" --quiet --data-dir "$data" --output "$work/out-embedded" > "$work/embedded.log"
t1="$(now)"

job tcp "tcp://127.0.0.1:$port"
t2="$(now)"
"$shoal" master "$work/tcp.toml" --insecure --quiet --data-dir "$data" --output "$work/out-tcp" > "$work/tcp.log" 2>&1 &
master=$!
workers=()
for id in $(seq 1 8); do
  "$shoal" worker "$work/tcp.toml" --id "$id" --insecure --data-dir "$data" > /dev/null 2>&1 &
  workers+=($!)
done
wait "$master"
t3="$(now)"
for w in "${workers[@]}"; do wait "$w"; done

python3 - "$work" "$t0" "$t1" "$t2" "$t3" <<'EOF'
import json, sys
work, t0, t1, t2, t3 = sys.argv[1], *map(float, sys.argv[2:])
for name in ("embedded", "tcp"):
    r = json.load(open(f"{work}/out-{name}/report.json"))
    rounds = r["rounds"]
    total = sum(x["seconds"] for x in rounds)
    compute = sum(x["compute_seconds"] for x in rounds)
    evals = sum(x["eval_seconds"] for x in rounds)
    over = total - compute - evals
    print(f"{name:<9} {len(rounds)} rounds, {total:.2f} s in rounds: children {compute:.2f} s, evaluation {evals:.2f} s, "
          f"overhead {over:.2f} s = {100 * over / total:.1f}% of round time (target <= 10%); "
          f"final accuracy {r['final_accuracy']}")
emb, tcp = t1 - t0, t3 - t2
print(f"wall time: embedded {emb:.2f} s, processes over tcp {tcp:.2f} s: {tcp / emb:.2f}x (target <= 1.2x)")
EOF
