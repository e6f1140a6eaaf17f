#!/usr/bin/env bash
# A small deployment's memory (issue 23, ADR 0054): the published service's (as the image publishes it) resident memory at start, under 16 PATCH
# connections, under GETs and after idling, in Production and in Development (the same build, the environment switched).
# Resident memory is /proc/PID/status VmRSS sampled every second; "steady" is the median of the samples after the first
# ten seconds of load, "peak" the highest. It also splits the steady figure into the managed heap's share and the rest
# (smaps_rollup: anonymous memory vs mapped files). Prints Markdown.
#
#   bash bench/memory/run.sh [seconds of PATCH load, default 40]
#
# EDBENCH_MEMORY_ENV="NAME=value …" adds environment variables to the service (a GC setting to try); EDBENCH_MEMORY_ENVS
# picks the environments (default "Production Development").
# Needs: PostgreSQL server binaries on PATH, wrk (apt-get install wrk), the .NET SDK.
set -euo pipefail
LOAD_SECONDS=${1:-40}
SOURCES=64
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/edbench-memory.XXXXXX)
PORT=${EDBENCH_PG_PORT:-55873}
HTTP_PORT=${EDBENCH_HTTP_PORT:-5193}
source "$HERE/../throwaway-cluster.sh"
source "$HERE/../sources.sh"
psql_() { psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

# The image's publish (ReadyToRun, ADR 0056) unless EDBENCH_MEMORY_PUBLISH=plain.
PUBLISH=${EDBENCH_MEMORY_PUBLISH:-ReadyToRun}
echo "publishing the service (Release, $PUBLISH)…" >&2
if [ "$PUBLISH" = plain ]; then
  dotnet publish "$REPO/src/ExternalData.EventSourced.Api" -c Release -o "$WORK/app" -v q -nologo >&2
else
  dotnet publish "$REPO/src/ExternalData.EventSourced.Api" -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true \
    -o "$WORK/app" -v q -nologo >&2
fi
start_cluster -c synchronous_commit=off -c full_page_writes=off -c max_connections=200
create_customer_database

export ExternalData__Encryption__MasterKeys__bench=$(head -c 32 /dev/urandom | base64)
export ExternalData__Network__AllowPrivateHosts=true
export ExternalData__Demo__Enabled=false
export Logging__LogLevel__Default=Warning
APP="$WORK/app/ExternalData.EventSourced.Api.dll"
rss() { awk '/^VmRSS/ {printf "%.0f\n", $2 / 1024}' "/proc/$SVC/status"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
sample() { # $1 = seconds; appends one VmRSS (MB) a second to "$WORK/samples"
  for _ in $(seq 1 "$1"); do rss >> "$WORK/samples"; sleep 1; done
}

measure() { # $1 = environment; prints one table row
  local env=$1 db="service_${1,,}"
  psql_ -c "CREATE DATABASE $db"
  export ASPNETCORE_ENVIRONMENT=$env ConnectionStrings__Marten="Host=127.0.0.1;Port=$PORT;Username=postgres;Database=$db"
  KEY=$(dotnet "$APP" api-keys create --name memory-bench --projects all 2>/dev/null | tail -1); export KEY
  # shellcheck disable=SC2086
  env ${EDBENCH_MEMORY_ENV:-} dotnet "$APP" --urls "http://127.0.0.1:$HTTP_PORT" > "$WORK/service-$env.log" 2>&1 &
  SVC=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$HTTP_PORT/health/ready" >/dev/null && break; sleep 0.5; done
  local at_start
  PATHS=$(create_sources "http://127.0.0.1:$HTTP_PORT" $SOURCES); export PATHS
  sleep 5; at_start=$(rss)

  : > "$WORK/samples"
  METHOD=PATCH wrk -t2 -c16 -d"${LOAD_SECONDS}s" -s "$REPO/bench/outside/requests.lua" "http://127.0.0.1:$HTTP_PORT" > "$WORK/patch.wrk" &
  local wrk=$!
  sleep 10; sample $((LOAD_SECONDS - 12))
  local anon file heap
  anon=$(awk '/^Anonymous:/ {printf "%.0f", $2 / 1024}' "/proc/$SVC/smaps_rollup")
  file=$(awk '/^Rss:/ {r = $2} /^Anonymous:/ {a = $2} END {printf "%.0f", (r - a) / 1024}' "/proc/$SVC/smaps_rollup")
  # Where the resident memory is, by mapping (anonymous memory has no name), for the doc's breakdown.
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = NF >= 6 ? $6 : "[anonymous]"} /^Rss:/ {rss[name] += $2}
       END {for (n in rss) if (rss[n] >= 1024) printf "%8.1f MB  %s\n", rss[n] / 1024, n}' "/proc/$SVC/smaps" | sort -rn | head -25 \
    > "$WORK/mappings-$env"
  echo "resident memory by mapping, $env, under PATCH load:" >&2; cat "$WORK/mappings-$env" >&2
  wait "$wrk"
  local steady peak patch_rate get_rate after_idle
  steady=$(median < "$WORK/samples"); peak=$(sort -n "$WORK/samples" | tail -1)
  patch_rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/patch.wrk")
  : > "$WORK/samples"
  METHOD=GET wrk -t2 -c16 -d15s -s "$REPO/bench/outside/requests.lua" "http://127.0.0.1:$HTTP_PORT" > "$WORK/get.wrk" &
  wrk=$!; sleep 5; sample 8; wait "$wrk"
  local get_steady; get_steady=$(median < "$WORK/samples"); peak=$(sort -n "$WORK/samples" <(echo "$peak") | tail -1)
  get_rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/get.wrk")
  sleep 30; after_idle=$(rss)
  kill "$SVC"; wait "$SVC" 2>/dev/null || true; SVC=
  echo "| $env | $at_start MB | **$steady MB** (anonymous $anon, mapped files $file) | $peak MB | $get_steady MB | $after_idle MB | $patch_rate | $get_rate |"
}

echo "## memory: resident MB, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M') UTC${EDBENCH_MEMORY_ENV:+, with $EDBENCH_MEMORY_ENV}"
echo
echo "Published Release build ($PUBLISH), $SOURCES sources, \`wrk -t2 -c16\` PATCH for ${LOAD_SECONDS} s then GET for 15 s, then 30 s idle."
echo
echo "| environment | at start | steady under PATCH | peak | under GET | after 30 s idle | PATCH req/s | GET req/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for env in ${EDBENCH_MEMORY_ENVS:-Production Development}; do measure "$env"; done
