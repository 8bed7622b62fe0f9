# shellcheck shell=bash
# Sourced by scripts/demo, scripts/test and scripts/stop-local-services: everything tape
# needs around it, set up on a fresh Debian/Ubuntu machine.
#
#   tape_ensure_rust      cargo on PATH (rustup if missing and the network allows)
#   tape_ensure_services  PostgreSQL at TAPE_DATABASE_URL and Redis at TAPE_REDIS_URL,
#                         or project-local instances in .local/ (started, or reused),
#                         then exports the URLs that work
#   tape_stop_local       stops the project-local instances
#
# Defaults: TAPE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tape
#           TAPE_REDIS_URL=redis://127.0.0.1:6379
# Local instances: PostgreSQL on 127.0.0.1:${TAPE_LOCAL_PG_PORT:-55432} (trust auth, socket
# in .local/pg/run), Redis on 127.0.0.1:${TAPE_LOCAL_REDIS_PORT:-56379}; they never touch
# the system's own services. Missing binaries are installed with apt-get (sudo when not
# root). The callers run with `set -euo pipefail`.

TAPE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TAPE_LOCAL_DIR=${TAPE_LOCAL_DIR:-$TAPE_ROOT/.local}
TAPE_LOCAL_PG_PORT=${TAPE_LOCAL_PG_PORT:-55432}
TAPE_LOCAL_REDIS_PORT=${TAPE_LOCAL_REDIS_PORT:-56379}
export TAPE_DATABASE_URL=${TAPE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tape}
export TAPE_REDIS_URL=${TAPE_REDIS_URL:-redis://127.0.0.1:6379}
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-3}

tape_step() { printf '\n==> %s\n' "$*" >&2; }
tape_info() { printf '    %s\n' "$*" >&2; }
tape_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
tape_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        # Without a terminal (CI) sudo must not wait for a password nobody can type.
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        printf 'error: this step needs root: run as root or install sudo (command: %s)\n' "$*" >&2
        return 1
    fi
}

# apt-get install, with one `apt-get update` first per run. Returns non-zero on failure
# (the caller decides whether that is fatal).
tape_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        printf 'error: apt-get not found: install %s yourself (these scripts bootstrap Debian and Ubuntu)\n' "$*" >&2
        return 1
    fi
    tape_info "installing $* with apt-get"
    if [ -z "${TAPE_APT_UPDATED:-}" ]; then
        tape_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        TAPE_APT_UPDATED=1
    fi
    tape_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------------------------------
# Rust
# ---------------------------------------------------------------------------------------

tape_ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cc >/dev/null 2>&1; then
        tape_info "no C compiler/linker (cc) found: Rust needs one to link"
        tape_apt_install build-essential pkg-config || tape_die "could not install a C toolchain (build-essential)"
    fi
    if command -v cargo >/dev/null 2>&1; then
        tape_check_rust_version
        return 0
    fi
    printf 'cargo was not found: installing the Rust toolchain with rustup (https://rustup.rs)\n' >&2
    command -v curl >/dev/null 2>&1 || tape_apt_install curl ca-certificates || tape_die "could not install curl"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt ||
        tape_die "rustup could not be installed (no network?). Install Rust 1.87 or newer from https://rustup.rs and retry"
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null 2>&1 || tape_die "rustup ran but cargo is still not on PATH"
}

# tape needs the rust-version of Cargo.toml (1.87); an older toolchain fails to build with
# a less helpful message.
tape_check_rust_version() {
    local version minor
    version=$(rustc --version 2>/dev/null | awk '{print $2}')
    minor=$(printf '%s\n' "$version" | cut -d. -f2)
    if [ -n "$minor" ] && [ "$minor" -lt 87 ] 2>/dev/null; then
        if command -v rustup >/dev/null 2>&1; then
            tape_info "rustc $version is older than 1.87: updating with rustup"
            rustup update stable || tape_die "rustup update failed: tape needs Rust 1.87 or newer (rustc $version)"
        else
            tape_die "rustc $version is older than 1.87, which tape needs: install Rust from https://rustup.rs"
        fi
    fi
}

# ---------------------------------------------------------------------------------------
# URLs and probes
# ---------------------------------------------------------------------------------------

# Splits postgres://user[:pw]@host[:port]/db into TAPE_PG_{HOST,PORT,DB}.
tape_parse_pg_url() {
    local url=$1 re='^postgres(ql)?://(([^:@/]+)(:[^@/]*)?@)?([^:/?]+)(:([0-9]+))?(/([^?]*))?'
    [[ $url =~ $re ]] || tape_die "TAPE_DATABASE_URL=$url is not a postgres://user@host:port/db URL"
    TAPE_PG_HOST=${BASH_REMATCH[5]}
    TAPE_PG_PORT=${BASH_REMATCH[7]:-5432}
    TAPE_PG_DB=${BASH_REMATCH[9]:-tape}
}

# Splits redis://[user:pw@]host[:port][/db] into TAPE_REDIS_{HOST,PORT}.
tape_parse_redis_url() {
    local url=$1 re='^rediss?://([^@/]*@)?([^:/?]+)(:([0-9]+))?'
    [[ $url =~ $re ]] || tape_die "TAPE_REDIS_URL=$url is not a redis://host:port URL"
    TAPE_REDIS_HOST=${BASH_REMATCH[2]}
    TAPE_REDIS_PORT=${BASH_REMATCH[4]:-6379}
}

# Whether something accepts TCP connections on host:port (bash's /dev/tcp, 2 s cap).
tape_tcp_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# psql from PATH or from the newest server install.
tape_find_pg_bin() {
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$dir/$1" ]; then
            printf '%s\n' "$dir/$1"
            return 0
        fi
    done
    command -v "$1" 2>/dev/null
}

tape_psql() {
    local psql
    psql=$(tape_find_pg_bin psql) || return 127
    "$psql" "$@"
}

# Whether PostgreSQL answers at $1; creates the database when only it is missing.
tape_pg_reachable() {
    local url=$1 error
    tape_parse_pg_url "$url"
    if ! tape_find_pg_bin psql >/dev/null && [ -z "${TAPE_PG_CLIENT_TRIED:-}" ]; then
        TAPE_PG_CLIENT_TRIED=1
        tape_apt_install postgresql-client || tape_info "could not install postgresql-client"
    fi
    if ! tape_find_pg_bin psql >/dev/null; then
        tape_info "psql unavailable: probing $TAPE_PG_HOST:$TAPE_PG_PORT over TCP only"
        tape_tcp_open "$TAPE_PG_HOST" "$TAPE_PG_PORT"
        return
    fi
    if error=$(tape_psql "$url" -Atqc 'select 1' 2>&1 >/dev/null); then
        return 0
    fi
    if [[ $error == *"database \"$TAPE_PG_DB\" does not exist"* ]]; then
        tape_info "creating database $TAPE_PG_DB on $TAPE_PG_HOST:$TAPE_PG_PORT"
        local admin=${url%%/"$TAPE_PG_DB"*}/postgres
        tape_psql "$admin" -Atqc "create database \"$TAPE_PG_DB\"" >/dev/null 2>&1 || true
        tape_psql "$url" -Atqc 'select 1' >/dev/null 2>&1
        return
    fi
    tape_info "PostgreSQL at $TAPE_PG_HOST:$TAPE_PG_PORT: ${error%%$'\n'*}"
    return 1
}

tape_redis_reachable() {
    tape_parse_redis_url "$1"
    if ! command -v redis-cli >/dev/null 2>&1 && [ -z "${TAPE_REDIS_CLIENT_TRIED:-}" ]; then
        TAPE_REDIS_CLIENT_TRIED=1
        tape_apt_install redis-tools || tape_info "could not install redis-tools"
    fi
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -u "$1" ping 2>/dev/null)" = PONG ]
        return
    fi
    # No client: speak RESP by hand (the single quotes are for the inner bash).
    # shellcheck disable=SC2016
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r reply <&3
        [ "${reply%$'"'"'\r'"'"'}" = "+PONG" ]' "$TAPE_REDIS_HOST" "$TAPE_REDIS_PORT" 2>/dev/null
}

# ---------------------------------------------------------------------------------------
# Project-local PostgreSQL
# ---------------------------------------------------------------------------------------

TAPE_PG_HOME=$TAPE_LOCAL_DIR/pg

# Runs a PostgreSQL tool as the cluster's owner: `postgres` when we are root (initdb and
# the server refuse to run as root), else ourselves.
tape_as_pg_owner() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
}

tape_local_pg_url() {
    tape_parse_pg_url "$TAPE_DATABASE_URL"
    printf 'postgres://postgres@127.0.0.1:%s/%s\n' "$TAPE_LOCAL_PG_PORT" "$TAPE_PG_DB"
}

tape_start_local_pg() {
    local initdb pg_ctl data=$TAPE_PG_HOME/data run=$TAPE_PG_HOME/run log=$TAPE_PG_HOME/postgres.log
    initdb=$(tape_find_pg_bin initdb) || true
    if [ -z "$initdb" ] || [ ! -x "$(dirname "$initdb")/pg_ctl" ]; then
        tape_info "no PostgreSQL server binaries (initdb, pg_ctl) found"
        tape_apt_install postgresql || tape_die "could not install PostgreSQL (apt-get install postgresql)"
        initdb=$(tape_find_pg_bin initdb) || tape_die "postgresql is installed but initdb is not found under /usr/lib/postgresql/*/bin"
    fi
    pg_ctl=$(dirname "$initdb")/pg_ctl
    local url
    url=$(tape_local_pg_url)

    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    mkdir -p "$TAPE_PG_HOME"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$TAPE_PG_HOME"
        tape_as_pg_owner test -w "$TAPE_PG_HOME" ||
            tape_die "the postgres user cannot write $TAPE_PG_HOME (a parent directory is not searchable by others?): set TAPE_LOCAL_DIR to a directory it can reach, e.g. /var/tmp/tape-local"
    fi
    tape_as_pg_owner mkdir -p "$run"

    if [ ! -s "$data/PG_VERSION" ]; then
        tape_info "initdb $data (trust auth for local connections)"
        tape_as_pg_owner "$initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$TAPE_PG_HOME/initdb.log" 2>&1 ||
            tape_die "initdb failed: see $TAPE_PG_HOME/initdb.log"
    fi
    if ! tape_as_pg_owner "$pg_ctl" -D "$data" status >/dev/null 2>&1; then
        tape_info "starting PostgreSQL on 127.0.0.1:$TAPE_LOCAL_PG_PORT (log: $log)"
        tape_as_pg_owner "$pg_ctl" -D "$data" -l "$log" -w -t 60 \
            -o "-p $TAPE_LOCAL_PG_PORT -k $run -c listen_addresses=127.0.0.1" start >/dev/null ||
            tape_die "PostgreSQL did not start: see $log"
    else
        tape_info "reusing the local PostgreSQL in $data"
    fi
    tape_pg_reachable "$url" || tape_die "the local PostgreSQL at $url does not answer: see $log"
    export TAPE_DATABASE_URL=$url
}

tape_stop_local_pg() {
    local data=$TAPE_PG_HOME/data pg_ctl
    [ -s "$data/PG_VERSION" ] || return 0
    pg_ctl=$(dirname "$(tape_find_pg_bin initdb)")/pg_ctl
    if tape_as_pg_owner "$pg_ctl" -D "$data" status >/dev/null 2>&1; then
        tape_as_pg_owner "$pg_ctl" -D "$data" -m fast -w stop >/dev/null && tape_info "stopped the local PostgreSQL ($data)"
    else
        tape_info "the local PostgreSQL is not running"
    fi
}

# ---------------------------------------------------------------------------------------
# Project-local Redis
# ---------------------------------------------------------------------------------------

TAPE_REDIS_HOME=$TAPE_LOCAL_DIR/redis

tape_start_local_redis() {
    local url=redis://127.0.0.1:$TAPE_LOCAL_REDIS_PORT
    if tape_redis_reachable "$url"; then
        tape_info "reusing the local Redis at $url"
        export TAPE_REDIS_URL=$url
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        tape_info "no redis-server binary found"
        tape_apt_install redis-server || tape_die "could not install Redis (apt-get install redis-server)"
    fi
    mkdir -p "$TAPE_REDIS_HOME"
    tape_info "starting Redis on 127.0.0.1:$TAPE_LOCAL_REDIS_PORT (log: $TAPE_REDIS_HOME/redis.log)"
    redis-server --port "$TAPE_LOCAL_REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
        --dir "$TAPE_REDIS_HOME" --pidfile "$TAPE_REDIS_HOME/redis.pid" \
        --logfile "$TAPE_REDIS_HOME/redis.log" --save '' --appendonly no >/dev/null ||
        tape_die "redis-server did not start: see $TAPE_REDIS_HOME/redis.log"
    local tries=0
    until tape_redis_reachable "$url"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 50 ]; then
            tape_die "the local Redis at $url does not answer: see $TAPE_REDIS_HOME/redis.log"
        fi
        sleep 0.1
    done
    export TAPE_REDIS_URL=$url
}

tape_stop_local_redis() {
    local pidfile=$TAPE_REDIS_HOME/redis.pid pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        local tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
            tries=$((tries + 1))
            sleep 0.1
        done
        tape_info "stopped the local Redis (pid $pid)"
    else
        tape_info "the local Redis is not running"
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------

tape_ensure_services() {
    if tape_pg_reachable "$TAPE_DATABASE_URL"; then
        tape_info "PostgreSQL: $TAPE_DATABASE_URL"
    else
        tape_info "PostgreSQL is not reachable at $TAPE_DATABASE_URL: using a project-local instance"
        tape_start_local_pg
        tape_info "PostgreSQL: $TAPE_DATABASE_URL (local, $TAPE_PG_HOME)"
    fi
    if tape_redis_reachable "$TAPE_REDIS_URL"; then
        tape_info "Redis: $TAPE_REDIS_URL"
    else
        tape_info "Redis is not reachable at $TAPE_REDIS_URL: using a project-local instance"
        tape_start_local_redis
        tape_info "Redis: $TAPE_REDIS_URL (local, $TAPE_REDIS_HOME)"
    fi
    export TAPE_DATABASE_URL TAPE_REDIS_URL
}

tape_stop_local() {
    tape_stop_local_pg
    tape_stop_local_redis
}
