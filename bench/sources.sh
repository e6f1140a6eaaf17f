# Sourced by the bench scripts that load the published service over HTTP (outside, memory): the customer database the
# sources point at, and the sources themselves. Needs psql_ (a psql on the bench's cluster), PORT and KEY.

# create_customer_database: the three tables every bench source lists (none synced).
create_customer_database() {
  psql_ -c "CREATE DATABASE customer"
  psql_ -d customer -c "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric, created_at timestamptz)" \
    -c "CREATE TABLE customers (id bigint PRIMARY KEY, name text, email text)" -c "CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb)"
}

# create_sources BASE_URL COUNT: COUNT sources of those three tables in project 1; prints their paths, space-separated.
create_sources() {
  local base=$1 count=$2 paths="" body id
  for i in $(seq 1 "$count"); do
    body='{"source_type":"Postgres","prefix":"p'$i'","payload":{"host":"127.0.0.1","port":"'$PORT'","database":"customer","user":"postgres","password":"unused","schema":"public","schemas":[{"name":"orders","should_sync":false},{"name":"customers","should_sync":false},{"name":"events","should_sync":false}]}}'
    id=$(curl -sf -X POST -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d "$body" "$base/api/projects/1/external_data_sources/" \
      | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
    paths="$paths /api/projects/1/external_data_sources/$id/"
  done
  echo "$paths"
}
