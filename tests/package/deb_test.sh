#!/usr/bin/env bash
# The Debian package, end to end (ctest: integration.DebPackage):
#   deb_test.sh CPACK CPACK_CONFIG VERSION SOURCE_DIR
# Builds homepot_VERSION_ARCH.deb from the built tree into a temporary folder,
# checks its fields, file list, modes and conffile, extracts it into a scratch
# root and runs the real /usr/sbin/mosquitto on a free loopback port with the
# extracted plugin and the extracted /etc/mosquitto/conf.d/homepot.conf made
# active, on a registry made by the extracted homepot-admin. A registered
# device then logs in and receives a stamped notification; an unknown one is
# refused. As root, mosquitto drops to user mosquitto as it does when
# installed, so the scratch root is world-readable and the registry folder
# belongs to mosquitto. cpack first brings the build up to date (its
# preinstall step builds every target), as `--target package` does.
set -euo pipefail
cpack=$1 cpack_config=$2 version=$3 source_dir=$4

tmp=$(mktemp -d /tmp/homepot-deb.XXXXXX)
broker_pid=""
# True while the broker runs (an exited child stays a zombie until waited).
broker_alive() {
  [ -n "$broker_pid" ] || return 1
  local stat
  stat=$(cat "/proc/$broker_pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
cleanup() {
  if [ -n "$broker_pid" ]; then  # not reaped yet, so still ours
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Waits until the command succeeds, for at most $1 seconds.
eventually() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# ------------------------------------------------------------------ build
arch=$(dpkg --print-architecture)
"$cpack" -G DEB --config "$cpack_config" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 ||
  fail "cpack failed:
$(cat "$tmp/cpack.log")"
deb=$tmp/out/homepot_${version}_${arch}.deb
[ -f "$deb" ] || fail "no $deb; cpack made: $(ls "$tmp/out")"

# ----------------------------------------------------------------- fields
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = homepot ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version)"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture: $(field Architecture)"

# Depends: the name of each entry (before any version or alternative).
depends=$(field Depends)
declare -A depends_on=()
while IFS= read -r entry; do
  [ -n "$entry" ] && depends_on[${entry%% *}]="$entry"
done < <(tr ',|' '\n\n' <<<"$depends" | sed 's/^ *//')
[ "${depends_on[mosquitto]:-}" = "mosquitto (>= 2.0)" ] ||
  fail "Depends lacks 'mosquitto (>= 2.0)': $depends"
# From dpkg-shlibdeps: the C and C++ runtimes, SQLite and OpenSSL's libcrypto.
for p in libc6 libstdc++6 libsqlite3-0 libssl3; do
  [ -n "${depends_on[$p]:-}" ] || fail "Depends lacks $p: $depends"
done

# ------------------------------------------------------------------ files
# Debian's own plugin directory (/usr/lib/<multiarch>).
dynsec=$(dpkg -L mosquitto | grep '/mosquitto_dynamic_security\.so$') ||
  fail "dpkg -L mosquitto lists no mosquitto_dynamic_security.so"
plugin_dir=$(dirname "$dynsec")
plugin=$plugin_dir/mosquitto_homepot.so

# "MODE OWNER PATH" for each entry of the archive, PATH without the leading dot.
dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\./, "", p); print $1, $2, p }' \
  >"$tmp/contents"
entry() { awk -v p="$1" '$3 == p { print $1, $2 }' "$tmp/contents"; }
expect_file() {  # PATH MODE
  local got
  got=$(entry "$1")
  [ "$got" = "$2 root/root" ] ||
    fail "$1: expected '$2 root/root', got '${got:-nothing}'"
}
expect_file "$plugin" -rw-r--r--
expect_file /usr/bin/homepot-admin -rwxr-xr-x
expect_file /etc/mosquitto/conf.d/homepot.conf -rw-r--r--
expect_file /usr/share/doc/homepot/README.md -rw-r--r--
while IFS= read -r f; do
  expect_file "/usr/share/homepot/$f" -rw-r--r--
done < <(cd "$source_dir" && find schema acl conf -type f | sort)
for f in "$source_dir"/docs/*.md; do
  expect_file "/usr/share/doc/homepot/docs/$(basename "$f")" -rw-r--r--
done
outside=$(awk '$3 !~ /^\/(usr|etc)(\/|$)/ && $3 != "/"' "$tmp/contents")
[ -z "$outside" ] || fail "entries outside /usr and /etc:
$outside"
not_root=$(awk '$2 != "root/root"' "$tmp/contents")
[ -z "$not_root" ] || fail "entries not owned by root:
$not_root"

dpkg-deb -e "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles")" = /etc/mosquitto/conf.d/homepot.conf ] ||
  fail "conffiles: $(cat "$tmp/control/conffiles" 2>&1)"

# ---------------------------------------------------------------- extract
root=$tmp/root
dpkg-deb -x "$deb" "$root"
chmod 0755 "$tmp" "$root"
conf_d=$root/etc/mosquitto/conf.d/homepot.conf
active=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$conf_d" || true)
[ -z "$active" ] || fail "homepot.conf is not inert as installed:
$active"
grep -qx "#plugin $plugin" "$conf_d" || fail "homepot.conf does not name $plugin"

# --------------------------------------------------------------- registry
admin=$root/usr/bin/homepot-admin
registry=$tmp/registry
mkdir "$registry"
export HOMEPOT_DB=$registry/homepot.db
"$admin" init >/dev/null
echo 'sensor-pw' | "$admin" device add sensor-001 --type iot_sensor >/dev/null
backend_pw=$("$admin" device add backend --type backend --generate-password)
"$admin" acl grant backend write 'devices/+/notifications' >/dev/null
if [ "$(id -u)" -eq 0 ]; then
  chown -R mosquitto: "$registry"
fi

# ----------------------------------------------------------------- broker
# The installed conf.d file made active as its comment says (uncomment the
# settings), pointed at the scratch root, the registry and a free port.
start_broker() {
  local port=$1
  sed -e 's/^#\([a-z]\)/\1/' \
      -e "s|^plugin /|plugin $root/|" \
      -e "s|^plugin_opt_db_path .*|plugin_opt_db_path $HOMEPOT_DB|" \
      -e "s|^listener 1883\$|listener $port 127.0.0.1|" \
      "$conf_d" >"$tmp/mosquitto.conf"
  grep -qx "listener $port 127.0.0.1" "$tmp/mosquitto.conf" ||
    fail "homepot.conf has no 'listener 1883' line to activate"
  printf 'log_dest stderr\npersistence false\n' >>"$tmp/mosquitto.conf"
  : >"$tmp/broker.log"
  /usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >"$tmp/broker.log" 2>&1 &
  broker_pid=$!
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ready() {  # PORT: our broker runs and accepts connections there
  broker_alive || return 2
  grep -q ' running$' "$tmp/broker.log" && listening "$1"
}
port=""
for attempt in 1 2 3 4 5; do
  candidate=$((20000 + RANDOM % 30000))
  listening "$candidate" && continue
  start_broker "$candidate"
  rc=0
  eventually 10 ready "$candidate" || rc=$?
  if [ "$rc" -eq 0 ]; then
    port=$candidate
    break
  fi
  if broker_alive; then
    fail "mosquitto did not start listening within 10 s:
$(cat "$tmp/broker.log")"
  fi
  wait "$broker_pid" || true
  broker_pid=""
  # Someone took the port between the probe and the bind: try another.
  grep -q 'Address already in use' "$tmp/broker.log" ||
    fail "mosquitto exited during start-up:
$(cat "$tmp/broker.log")"
done
[ -n "$port" ] || fail "no free port in 5 attempts"
if [ "$(id -u)" -eq 0 ]; then
  broker_uid=$(awk '$1 == "Uid:" { print $2 }' "/proc/$broker_pid/status")
  [ "$broker_uid" = "$(id -u mosquitto)" ] ||
    fail "mosquitto runs as uid $broker_uid, not as user mosquitto"
fi
grep -q "homepot: registry $HOMEPOT_DB loaded: 2 devices" "$tmp/broker.log" ||
  fail "the plugin did not load the registry:
$(cat "$tmp/broker.log")"

# ------------------------------------------------------------------- MQTT
mqtt=(-h 127.0.0.1 -p "$port" -V mqttv311)
sensor=(-u sensor-001 -P sensor-pw -i sensor-001 -c -q 1
        -t devices/sensor-001/notifications)
# A durable session first, so the notification waits for the device.
timeout 10 mosquitto_sub "${mqtt[@]}" "${sensor[@]}" -E ||
  fail "sensor-001 could not log in and subscribe:
$(cat "$tmp/broker.log")"
timeout 10 mosquitto_pub "${mqtt[@]}" -u backend -P "$backend_pw" -q 1 \
  -t devices/sensor-001/notifications \
  -m '{"title":"Package","body":"installed","message_id":"deb-1"}' ||
  fail "backend could not publish"
timeout 15 mosquitto_sub "${mqtt[@]}" "${sensor[@]}" -C 1 -W 10 \
  >"$tmp/notification.json" ||
  fail "sensor-001 did not receive the notification:
$(cat "$tmp/broker.log")"
# Parsed by SQLite's JSON functions: the body came through, stamped.
checked=$(sqlite3 -batch -noheader :memory: \
  "SELECT json_extract(j, '\$.body'), json_type(j, '\$.received_at')
   FROM (SELECT CAST(readfile('$tmp/notification.json') AS TEXT) AS j)
   WHERE json_valid(j)")
[ "$checked" = "installed|text" ] ||
  fail "received notification not stamped: $(cat "$tmp/notification.json")"

# An unknown device is refused at CONNECT.
rc=0
timeout 10 mosquitto_pub "${mqtt[@]}" -u intruder -P guess -t x -m y \
  2>"$tmp/intruder.err" || rc=$?
[ "$rc" -ne 0 ] && grep -q 'not authorised' "$tmp/intruder.err" ||
  fail "unknown device not refused (exit $rc): $(cat "$tmp/intruder.err")"

# ------------------------------------------------------------------- stop
kill -TERM "$broker_pid"
broker_stopped() { ! broker_alive; }
eventually 10 broker_stopped ||
  fail "mosquitto did not stop within 10 s"
rc=0
wait "$broker_pid" || rc=$?
broker_pid=""
[ "$rc" -eq 0 ] || fail "mosquitto exited with $rc:
$(cat "$tmp/broker.log")"
echo "PASS: $(basename "$deb"): $(wc -l <"$tmp/contents") entries; Depends: $depends"
