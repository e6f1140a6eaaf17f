#!/usr/bin/env bash
# The service from outside: wrk against the published service over real TCP, and pgbench doing the same SQL work on the
# same throwaway PostgreSQL cluster, same run, same machine. pg_stat_statements (with planning) records what the database
# did per request during each service run. Prints Markdown.
#
#   bash bench/outside/run.sh [seconds per run, default 20] [connections, default 16]
#
# Needs: PostgreSQL server binaries on PATH (as the tests), wrk (apt-get install wrk), pgbench (comes with PostgreSQL),
# the .NET SDK. Runs as root (the cluster runs as the postgres OS user) or as an ordinary user.
set -euo pipefail
SECONDS_PER_RUN=${1:-20}
CONNECTIONS=${2:-16}
SOURCES=64
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/edbench-outside.XXXXXX)
PORT=${EDBENCH_PG_PORT:-55871}
HTTP_PORT=${EDBENCH_HTTP_PORT:-5191}
source "$HERE/../throwaway-cluster.sh"
source "$HERE/../sources.sh"
psql_() { psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

echo "publishing the service (Release)…" >&2
dotnet publish "$REPO/src/ExternalData.EventSourced.Api" -c Release -o "$WORK/app" -v q -nologo >&2

# The cluster: as the tests' (fsync off), plus pg_stat_statements with planning times and statements inside functions.
start_cluster -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on
psql_ -c "CREATE DATABASE service"
psql_ -d service -c "CREATE EXTENSION pg_stat_statements"
create_customer_database

export ASPNETCORE_ENVIRONMENT=Production
export ConnectionStrings__Marten="Host=127.0.0.1;Port=$PORT;Username=postgres;Database=service${EDBENCH_CONNECTION_EXTRA:-}"
export ExternalData__Encryption__MasterKeys__bench=$(head -c 32 /dev/urandom | base64)
export ExternalData__Network__AllowPrivateHosts=true
export Logging__LogLevel__Default=Warning
APP="$WORK/app/ExternalData.EventSourced.Api.dll"
export KEY=$(dotnet "$APP" api-keys create --name outside-bench --projects all 2>/dev/null | tail -1)
dotnet "$APP" --urls "http://127.0.0.1:$HTTP_PORT" > "$WORK/service.log" 2>&1 &
SVC=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$HTTP_PORT/health/ready" >/dev/null && break; sleep 0.5; done

echo "creating $SOURCES sources of 3 tables…" >&2
PATHS=$(create_sources "http://127.0.0.1:$HTTP_PORT" $SOURCES)
export PATHS

# One warm-up pass of each, so the JIT and the plans are warm as in a long-running service.
METHOD=PATCH wrk -t2 -c"$CONNECTIONS" -d3s -s "$HERE/requests.lua" "http://127.0.0.1:$HTTP_PORT" >/dev/null
METHOD=GET wrk -t2 -c"$CONNECTIONS" -d3s -s "$HERE/requests.lua" "http://127.0.0.1:$HTTP_PORT" >/dev/null

statements() { # $1 = requests served: the top statements by total time, per request
  psql_ -d service -A -F '|' -t -c "
    SELECT round(calls::numeric / $1, 2), round(mean_exec_time::numeric, 3), round((plans::numeric / greatest(calls, 1)), 2),
           round(mean_plan_time::numeric, 3), round(((total_exec_time + total_plan_time) / $1)::numeric, 3),
           left(regexp_replace(query, '\s+', ' ', 'g'), 110)
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'service')
      AND calls >= $1 / 4
    ORDER BY total_exec_time + total_plan_time DESC LIMIT 12" \
  | awk -F'|' '{ q=$6; gsub(/\|/, "\\|", q); printf "| %s | %s | %s | %s | %s | `%s` |\n", $1, $2, $3, $4, $5, q }'
}
requests() { awk '/requests in/ {print $1}' "$1"; }
rate() { awk '/Requests\/sec/ {printf "%.0f", $2}' "$1"; }
pct() { awk -v p="$2" '$1 == p {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {print $5}' "$1"; }

HZ=$(getconf CLK_TCK)
# CPU ticks used so far by the service's process, and by the cluster's processes (the pool's backends live through a run).
service_ticks() { awk '{print $14 + $15}' "/proc/$SVC/stat"; }
cluster_ticks() {
  local postmaster; postmaster=$(head -1 "$WORK/pg/postmaster.pid")
  { echo "$postmaster"; pgrep -P "$postmaster" || true; } | while read -r pid; do cat "/proc/$pid/stat" 2>/dev/null || true; done \
    | awk '{s += $14 + $15} END {print s}'
}
run_service() { # $1 = patch|get: wrk's report, the statements per request, and CPU ms per request of the service, PostgreSQL, wrk
  psql_ -d service -c "SELECT pg_stat_statements_reset()" >/dev/null
  local s0 c0 s1 c1 n; s0=$(service_ticks); c0=$(cluster_ticks)
  { TIMEFORMAT='%U %S'; time METHOD=${1^^} wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$HERE/requests.lua" "http://127.0.0.1:$HTTP_PORT" \
      > "$WORK/$1.wrk"; } 2> "$WORK/$1.wrktime"
  s1=$(service_ticks); c1=$(cluster_ticks); n=$(requests "$WORK/$1.wrk")
  awk -v s="$((s1 - s0))" -v c="$((c1 - c0))" -v hz="$HZ" -v n="$n" '{printf "%.3f %.3f %.3f\n", s / hz * 1000 / n, c / hz * 1000 / n, ($1 + $2) * 1000 / n}' \
    "$WORK/$1.wrktime" > "$WORK/$1.cpu"
  statements "$n" > "$WORK/$1.statements"
  psql_ -d service -A -t -c "SELECT calls, query FROM pg_stat_statements ORDER BY calls DESC" > "$WORK/$1.queries"
}
run_service patch
run_service get
kill "$SVC"; wait "$SVC" 2>/dev/null || true; SVC=

# The same work in SQL, by pgbench on the same cluster: prepared statements (the service prepares its own, ADR 0053).
SCHEMA=$(psql_ -d service -A -t -c "SELECT table_schema FROM information_schema.tables WHERE table_name = 'mt_doc_source' LIMIT 1")
psql_ -d service -c "DROP SCHEMA IF EXISTS raw CASCADE; CREATE SCHEMA raw;
  CREATE SEQUENCE raw.audit_seq START 1000000000000;
  CREATE TABLE raw.events (seq bigserial PRIMARY KEY, stream_id uuid NOT NULL, version int NOT NULL, data jsonb NOT NULL, timestamp timestamptz NOT NULL DEFAULT now());
  CREATE TABLE raw.docs AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id, tenant_id, mt_version AS version, data FROM $SCHEMA.mt_doc_source;
  ALTER TABLE raw.docs ADD PRIMARY KEY (n); CREATE UNIQUE INDEX ON raw.docs (id);" >/dev/null
# Each client owns four sources, so no two clients wait on one row lock (as wrk's threads never do, see requests.lua).
cat > "$WORK/patch.sql" <<SQL
\set n (:client_id * 4 + random(0, 3)) % $SOURCES
BEGIN;
SELECT id, version, data FROM raw.docs WHERE n = :n FOR UPDATE;
INSERT INTO raw.events (stream_id, version, data) SELECT id, version + 1, jsonb_build_object('description', 'load ' || :client_id) FROM raw.docs WHERE n = :n;
UPDATE raw.docs SET version = version + 1, data = jsonb_set(data, '{description}', to_jsonb('load ' || :client_id)) WHERE n = :n;
END;
SQL
# The retrieve's own two reads (the source's document, its schemas' documents) on the service's tables.
cat > "$WORK/get.sql" <<SQL
\set n random(0, $((SOURCES - 1)))
SELECT d.data FROM $SCHEMA.mt_doc_source d JOIN raw.docs r USING (id) WHERE r.n = :n AND d.tenant_id = r.tenant_id;
SELECT s.data FROM $SCHEMA.mt_doc_sourceschema s JOIN raw.docs r ON r.id = s.source_id WHERE r.n = :n ORDER BY s.name;
SQL
# The service's own statements per request, as pg_stat_statements listed them, replayed by pgbench with the same documents
# and event bodies (a sample taken from what the service wrote): what the database alone does for a request.
psql_ -d service -c "CREATE TABLE raw.sample AS SELECT
    (SELECT data FROM $SCHEMA.mt_events WHERE type = 'source_updated' ORDER BY seq_id DESC LIMIT 1) AS event,
    (SELECT headers FROM $SCHEMA.mt_events WHERE type = 'source_updated' ORDER BY seq_id DESC LIMIT 1) AS headers" >/dev/null
# Pipelined as the service batches them (Npgsql sends a batch in one round trip): the lock with the load, the append with
# the document, the commit, the answer's reads; the audit feed's index row rides along with those (the daemon writes a page
# of them per round trip).
SID="(SELECT id FROM raw.docs WHERE n = :n)"
cat > "$WORK/patch-own.sql" <<SQL
\set n (:client_id * 4 + random(0, 3)) % $SOURCES
\startpipeline
BEGIN;
SELECT version FROM $SCHEMA.mt_streams WHERE id = $SID AND tenant_id = '1' FOR UPDATE;
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_source AS d WHERE id = $SID AND d.tenant_id = '1';
\endpipeline
\startpipeline
SELECT $SCHEMA.mt_quick_append_events($SID, 'source', '1', ARRAY[gen_random_uuid()], ARRAY['source_updated']::varchar[],
  ARRAY['ExternalData.EventSourced.Sources.SourceUpdated']::varchar[], ARRAY[(SELECT event FROM raw.sample)], ARRAY[NULL]::bytea[],
  ARRAY[NULL]::varchar[], ARRAY[NULL]::varchar[], ARRAY[(SELECT headers FROM raw.sample)], ARRAY[NULL]::varchar[], ARRAY[now()], NULL);
INSERT INTO $SCHEMA.mt_doc_source (tenant_id, id, data, mt_version, mt_dotnet_type, mt_last_modified, source_type, prefix, warehouse_prefix_key)
  SELECT d.tenant_id, d.id, jsonb_set(d.data, '{Description}', to_jsonb('load ' || :client_id)), s.version, d.mt_dotnet_type, transaction_timestamp(),
    d.source_type, d.prefix, d.warehouse_prefix_key FROM $SCHEMA.mt_doc_source d JOIN $SCHEMA.mt_streams s ON s.id = d.id AND s.tenant_id = d.tenant_id
  WHERE d.id = $SID AND d.tenant_id = '1'
  ON CONFLICT (tenant_id, id) DO UPDATE SET data = excluded.data, mt_version = excluded.mt_version, mt_last_modified = excluded.mt_last_modified
  RETURNING mt_version;
\endpipeline
END;
\startpipeline
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_schemasync AS d WHERE d.tenant_id = '1' AND d.source_id = $SID;
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_sourceschema AS d WHERE d.tenant_id = '1' AND d.source_id = $SID
  AND (d.data ->> 'Removed' IS NULL OR CAST(d.data ->> 'Removed' AS boolean) = false) ORDER BY d.name LIMIT 501;
INSERT INTO $SCHEMA.mt_audit_feed (seq_id, tenant_id, stream_id, type, actor_name, created_via, timestamp)
  VALUES (nextval('raw.audit_seq'), '1', $SID, 'source_updated', 'outside-bench', 'api', now()) ON CONFLICT (seq_id) DO NOTHING;
\endpipeline
SQL
cat > "$WORK/get-own.sql" <<SQL
\set n random(0, $((SOURCES - 1)))
\startpipeline
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_source AS d WHERE id = $SID AND d.tenant_id = '1';
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_schemasync AS d WHERE d.tenant_id = '1' AND d.source_id = $SID;
SELECT d.id, d.data, d.mt_version FROM $SCHEMA.mt_doc_sourceschema AS d WHERE d.tenant_id = '1' AND d.source_id = $SID
  AND (d.data ->> 'Removed' IS NULL OR CAST(d.data ->> 'Removed' AS boolean) = false) ORDER BY d.name LIMIT 501;
\endpipeline
SQL
for w in patch get patch-own get-own; do
  pgbench -n -h 127.0.0.1 -p "$PORT" -U postgres -M prepared -c "$CONNECTIONS" -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/$w.sql" service \
    > "$WORK/$w.pgbench" 2>&1
done
tps() { awk '/^tps/ {printf "%.0f", $3}' "$1"; }
lat() { awk '/latency average/ {print $4}' "$1"; }

echo "## From outside: wrk against the service, pgbench on the same SQL ($(date -u '+%Y-%m-%d %H:%M') UTC)"
echo
echo "$CONNECTIONS connections, ${SECONDS_PER_RUN} s each, $SOURCES sources of 3 tables, published Release build (Production), $(nproc) cores shared by wrk/pgbench, the service and PostgreSQL."
echo
echo "Raw SQL: the same logical work in minimal SQL (lock the row, insert the event, update the document; read the document"
echo "and its schemas). The service's SQL: the statements the service sends per request (pg_stat_statements below), the"
echo "audit feed's index row included, replayed by pgbench with the same documents and event bodies."
echo
echo "| | service req/s | p50 / p99 ms | non-2xx | raw SQL tx/s | ratio | the service's SQL tx/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for w in patch get; do
  s=$(rate "$WORK/$w.wrk"); r=$(tps "$WORK/$w.pgbench"); o=$(tps "$WORK/$w-own.pgbench")
  echo "| $w | $s | $(pct "$WORK/$w.wrk" 50%) / $(pct "$WORK/$w.wrk" 99%) | $(non2xx "$WORK/$w.wrk") | $r | $(awk -v a="$s" -v b="$r" 'BEGIN {printf "%.2fx", a / b}') | $o | $(awk -v a="$s" -v b="$o" 'BEGIN {printf "%.2fx", a / b}') |"
done
echo
echo "CPU per request during the service's runs (ms; /proc ticks of the service process and of the cluster's processes, wrk's own time):"
echo
echo "| | service | PostgreSQL | wrk | sum |"
echo "|---|---:|---:|---:|---:|"
for w in patch get; do
  read -r sv pg lg < "$WORK/$w.cpu"
  echo "| $w | $sv | $pg | $lg | $(awk -v a="$sv" -v b="$pg" -v c="$lg" 'BEGIN {printf "%.3f", a + b + c}') |"
done
for w in patch get; do
  echo
  echo "### pg_stat_statements during the service's $w run (per request; statements run by at least every 4th request; with"
  echo "track=all a function's own statements are listed beside the call that ran them, so the column does not add up)"
  echo
  echo "| calls/request | mean exec ms | plans/call | mean plan ms | ms/request | statement |"
  echo "|---:|---:|---:|---:|---:|---|"
  cat "$WORK/$w.statements"
done
