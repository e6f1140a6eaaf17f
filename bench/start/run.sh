#!/usr/bin/env bash
# An operator's start: the service published as the image publishes it, started against an existing database, timed from
# process start to its first 200 of /health/ready. Two publishes compared: plain (every method JIT-compiled at start, the
# baseline) and ReadyToRun (the app and its packages precompiled, ADR 0056). Then a newcomer's start: Development, the
# Debug build `dotnet run` makes, on an existing `.local` data folder (the embedded PostgreSQL started by the run), three
# ways: the built program, `dotnet run --no-build`, and `dotnet run` (which first checks the build is current). Prints Markdown.
#
#   bash bench/start/run.sh [starts per build, default 5]
#
# Needs: PostgreSQL server binaries on PATH (as the tests), the .NET SDK (the ReadyToRun compiler comes from NuGet).
set -euo pipefail
STARTS=${1:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/edbench-start.XXXXXX)
PORT=${EDBENCH_PG_PORT:-55872}
HTTP_PORT=${EDBENCH_HTTP_PORT:-5192}
source "$HERE/../throwaway-cluster.sh"

echo "publishing twice (plain, ReadyToRun)…" >&2
dotnet publish "$REPO/src/ExternalData.EventSourced.Api" -c Release -o "$WORK/plain" -v q -nologo >&2
dotnet publish "$REPO/src/ExternalData.EventSourced.Api" -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true \
  -o "$WORK/r2r" -v q -nologo >&2

start_cluster
psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE service"

export ASPNETCORE_ENVIRONMENT=Production
export ConnectionStrings__Marten="Host=127.0.0.1;Port=$PORT;Username=postgres;Database=service"
export ExternalData__Encryption__MasterKeys__bench=$(head -c 32 /dev/urandom | base64)
export Logging__LogLevel__Default=Warning
# The schema applied once, outside the timed starts (an existing deployment's database).
dotnet "$WORK/plain/ExternalData.EventSourced.Api.dll" api-keys create --name start-bench --projects all >/dev/null 2>&1

start_once() { # $1 = publish folder; prints ms to the first 200 of /health/ready
  local t0 t1 pid
  t0=$(date +%s%N)
  dotnet "$1/ExternalData.EventSourced.Api.dll" --urls "http://127.0.0.1:$HTTP_PORT" > "$WORK/service.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/health/ready"; do sleep 0.02; done
  t1=$(date +%s%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo $(( (t1 - t0) / 1000000 ))
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

plain=(); r2r=()
for _ in $(seq 1 "$STARTS"); do # alternating, so the host's drift touches both alike
  plain+=("$(start_once "$WORK/plain")"); r2r+=("$(start_once "$WORK/r2r")")
done
p=$(printf '%s\n' "${plain[@]}" | median); r=$(printf '%s\n' "${r2r[@]}" | median)
echo "## start: process start → first 200 of /health/ready ($(date -u '+%Y-%m-%d %H:%M') UTC)"
echo
echo "Production, an existing database, $(nproc) cores, median of $STARTS starts each, alternating."
echo
echo "| publish | median (ms) | starts (ms) | ratio |"
echo "|---|---:|---|---:|"
echo "| plain (JIT at start, baseline) | $p | ${plain[*]} | 1.00x |"
echo "| ReadyToRun (the image's) | $r | ${r2r[*]} | $(awk -v a="$r" -v b="$p" 'BEGIN {printf "%.2fx", a / b}') |"

echo
# A newcomer's start. The first start (untimed) creates the data folder, as the README's first run does.
echo "building Debug, creating the embedded data folder…" >&2
dotnet build "$REPO/src/ExternalData.EventSourced.Api" -c Debug -v q -nologo >&2
mkdir -p "$WORK/newcomer"
DLL="$REPO/src/ExternalData.EventSourced.Api/bin/Debug/net10.0/ExternalData.EventSourced.Api.dll"
dev_once() { # $@ = the command; prints ms to the first 200 of /health/ready
  local t0 t1 pid
  t0=$(date +%s%N)
  # Its own process group, so Ctrl-C's signal reaches `dotnet run` and the program it started, as in a terminal.
  (cd "$WORK/newcomer" && exec setsid env -u ConnectionStrings__Marten ASPNETCORE_ENVIRONMENT=Development "$@" --urls "http://127.0.0.1:$HTTP_PORT") > "$WORK/dev.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/health/ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/dev.log" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s%N)
  # The program stops its embedded PostgreSQL before it exits.
  kill -INT -- "-$pid"; wait "$pid" 2>/dev/null || true
  echo $(( (t1 - t0) / 1000000 ))
}
dev_once dotnet "$DLL" >/dev/null
built=(); norun=(); run=()
for _ in $(seq 1 "$STARTS"); do
  built+=("$(dev_once dotnet "$DLL")")
  norun+=("$(dev_once dotnet run --no-build --project "$REPO/src/ExternalData.EventSourced.Api" --)")
  run+=("$(dev_once dotnet run --project "$REPO/src/ExternalData.EventSourced.Api" --)")
done
b=$(printf '%s\n' "${built[@]}" | median); n=$(printf '%s\n' "${norun[@]}" | median); d=$(printf '%s\n' "${run[@]}" | median)
echo "Development, the Debug build, an existing \`.local\` data folder (the embedded PostgreSQL starts with each run), median of $STARTS starts each, alternating."
echo
echo "| command | median (ms) | starts (ms) | ratio |"
echo "|---|---:|---|---:|"
echo "| \`dotnet bin/Debug/…/ExternalData.EventSourced.Api.dll\` (baseline) | $b | ${built[*]} | 1.00x |"
echo "| \`dotnet run --no-build\` | $n | ${norun[*]} | $(awk -v a="$n" -v b="$b" 'BEGIN {printf "%.2fx", a / b}') |"
echo "| \`dotnet run\` (the README's) | $d | ${run[*]} | $(awk -v a="$d" -v b="$b" 'BEGIN {printf "%.2fx", a / b}') |"
