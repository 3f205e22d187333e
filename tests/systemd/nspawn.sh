#!/usr/bin/env bash
# Berth's .deb under a real systemd: a Debian 12 root made with mmdebstrap boots in
# systemd-nspawn (its own network namespace: no traffic leaves it, and the host's own services
# are never touched), the package is installed inside, and the test checks what an operator
# relies on:
#   - install enables berth-agent and does not start it while it has no scheduler;
#   - the first boot (berth-agent-first-boot.service) refuses broken user data, naming its
#     line, and the agent does not start; with good user data (a berth: section where
#     cloud-init leaves it) it writes /etc/berth/first-boot.toml (0600) and the agent takes its
#     scheduler endpoint from there;
#   - `systemctl start berth-agent` reaches active with the STATUS line naming its instance;
#   - `systemctl kill -s KILL berth-agent` is followed by a restart;
#   - `systemctl stop berth-agent` leaves a running container running;
#   - an upgrade to a newer build keeps the edited config and the container, and restarts the
#     agent.
# A piece that cannot run inside the booted root is reported by name and the rest still runs.
#
#   tests/systemd/nspawn.sh BIN_DIR [bench [ROUNDS]]   (BIN_DIR: the built binaries)
#
# With `bench` (make bench, release binaries) it installs, configures and starts the agent as
# above, then measures ROUNDS (default 10) starts of each kind instead of the checks: a first
# start (first boot, new instance: /etc/berth/first-boot.toml and /var/lib/berth removed
# before it) and a restart of a registered host; each from its first start job (systemd's
# InactiveExit timestamp of berth-agent-first-boot, or of berth-agent on a restart) to
# READY=1 (berth-agent's ActiveEnter) and to the scheduler's log line of the session's first
# heartbeat (its journal entry's monotonic time). Prints p50, p95 and max.
#
# The root is cached under $BERTH_TEST_CACHE (default target/test-cache) keyed by its package
# list, so only the first run downloads (from Debian's mirror). Needs root, mmdebstrap,
# systemd-nspawn (systemd-container), util-linux's nsenter and busybox-static. As non-root or without them it
# skips loudly, except with CI=true, where that is a failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin_dir="$(cd "${1:?usage: nspawn.sh BIN_DIR [bench [ROUNDS]]}" && pwd)"
mode="${2:-test}"
rounds="${3:-10}"
case "$mode" in test | bench) ;; *) echo "usage: nspawn.sh BIN_DIR [bench [ROUNDS]]" >&2; exit 2 ;; esac
mirror="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="systemd systemd-sysv dbus ca-certificates containerd runc nftables iproute2 tini"
deadline=180 # seconds, for every wait below (a loaded 2-core machine boots slowly)

say() { echo "nspawn: $*"; }
fail() { echo "nspawn: FAILED: $*" >&2; exit 1; }

missing=""
[ "$(id -u)" = 0 ] || missing="$missing root"
for tool in mmdebstrap systemd-nspawn nsenter dpkg-deb rpmbuild python3 busybox; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
	[ "${CI:-}" = true ] && fail "missing:$missing"
	echo "nspawn: SKIPPED: missing:$missing" >&2
	exit 0
fi

# The cached root: one tarball per package list, suite and variant.
cache="${BERTH_TEST_CACHE:-$repo/target/test-cache}/nspawn"
key="$(printf 'bookworm minbase %s' "$packages" | sha256sum | cut -c1-16)"
root_tar="$cache/debian12-$key.tar"
mkdir -p "$cache"
if [ ! -s "$root_tar" ]; then
	say "building the Debian 12 root ($packages) into $root_tar"
	mmdebstrap --quiet --format=tar --variant=minbase --include="${packages// /,}" bookworm \
		"$cache/partial-$key.tar" "$mirror"
	mv "$cache/partial-$key.tar" "$root_tar"
fi

work="$(mktemp -d /tmp/berth-nspawn.XXXXXX)"
nspawn_pid=""
cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		# SIGTERM asks the container's systemd to power off; then it is gone for sure.
		kill -TERM "$nspawn_pid" 2>/dev/null || true
		for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
		wait "$nspawn_pid" 2>/dev/null || true
	fi
	if [ "${BERTH_E2E_KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Two builds of the package: the installed one and a newer one to upgrade to.
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
BERTH_PACKAGE_FORMATS=deb BERTH_PACKAGE_COMPRESSION=fast "$repo/packaging/build.sh" "$bin_dir" "$work/old" "$version" >/dev/null
BERTH_PACKAGE_FORMATS=deb BERTH_PACKAGE_COMPRESSION=fast "$repo/packaging/build.sh" "$bin_dir" "$work/new" "$version+nspawn1" >/dev/null
old_deb="$(ls "$work"/old/*.deb)"
new_deb="$(ls "$work"/new/*.deb)"

mkdir "$work/root"
tar -C "$work/root" -xf "$root_tar"
cp "$old_deb" "$work/root/var/tmp/berth-old.deb"
cp "$new_deb" "$work/root/var/tmp/berth-new.deb"
# A one-file image for a container that is not the agent's: busybox-static as an OCI archive.
python3 "$here/oci_archive.py" "$(command -v busybox)" "$work/root/var/tmp/busybox-oci.tar"

say "booting the root"
systemd-nspawn --quiet --directory="$work/root" --boot --private-network --register=no \
	--keep-unit --machine="berth-test-$$" >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!

# The container's PID 1, seen from here: the process in a new PID namespace under nspawn.
leader=""
for _ in $(seq 1 $((deadline * 2))); do
	kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/console.log" >&2; fail "systemd-nspawn exited"; }
	for pid in $(pgrep -P "$nspawn_pid" || true) $(for c in $(pgrep -P "$nspawn_pid" || true); do pgrep -P "$c" || true; done); do
		if [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] &&
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then
			leader="$pid"
		fi
	done
	[ -n "$leader" ] && break
	sleep 0.5
done
[ -n "$leader" ] || fail "no systemd inside the container after ${deadline}s"

# Runs a command inside the booted root.
inside() { nsenter --target "$leader" --mount --uts --ipc --net --pid --wd=/ -- env -i \
	PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
prop() { inside systemctl show --property="$2" --value "$1"; }
# Polls a shell condition (evaluated here) until it holds or the deadline passes.
wait_for() {
	local what="$1"; shift
	local end=$((SECONDS + deadline))
	until "$@"; do
		[ $SECONDS -lt $end ] || fail "after ${deadline}s: $what"
		sleep 0.5
	done
}

state="$(inside timeout "$deadline" systemctl is-system-running --wait || true)"
say "booted: $state"
case "$state" in running | degraded) ;; *) cat "$work/console.log" >&2; fail "boot ended $state" ;; esac

say "install"
inside dpkg -i /var/tmp/berth-old.deb >"$work/dpkg-install.log" 2>&1 || { cat "$work/dpkg-install.log" >&2; fail "dpkg -i"; }
[ "$(inside systemctl is-enabled berth-agent.service)" = enabled ] || fail "berth-agent is not enabled after install"
[ "$(prop berth-agent.service ActiveState)" = inactive ] || fail "berth-agent started before it has a scheduler"
grep -q "enabled but not started" "$work/dpkg-install.log" || fail "install did not say why the agent is not started"

# A scheduler inside the root (plaintext on its loopback, not on the agent's default port, so
# the agent reaches it only through what the first boot wrote).
printf 'BERTH_SCHEDULER_INSECURE=true\nBERTH_SCHEDULER_LISTEN=127.0.0.1:7709\n' | inside tee /etc/default/berth-scheduler >/dev/null
if ! inside systemctl start berth-scheduler.service; then
	inside journalctl -u berth-scheduler --no-pager | tail -20 >&2
	fail "berth-scheduler.service does not start inside the root"
fi
# An administrator's edit of the conffile, which the upgrade must keep.
printf '\n# set by the nspawn test\nheartbeat_interval = "5s"\n' |
	inside tee -a /etc/berth/agent.toml >/dev/null
user_data=/var/lib/cloud/instance/user-data.txt
inside mkdir -p /var/lib/cloud/instance
good_user_data='#cloud-config
package_update: false
berth:
  cluster: default
  scheduler_endpoint: http://127.0.0.1:7709
'

if [ "$mode" = test ]; then
	say "first boot with broken user data"
	printf '#cloud-config\nberth:\n  cluster: default\n  scheduler-endpoint: http://127.0.0.1:7709\n' |
		inside tee "$user_data" >/dev/null
	if inside timeout "$deadline" systemctl start berth-agent.service 2>/dev/null; then
		fail "berth-agent started with broken user data"
	fi
	[ "$(prop berth-agent-first-boot.service Result)" = exit-code ] || fail "the first boot did not fail on broken user data"
	[ "$(prop berth-agent-first-boot.service ExecMainStatus)" = 64 ] || fail "the first boot's exit status is not 64"
	[ "$(prop berth-agent.service ActiveState)" != active ] || fail "berth-agent runs after a failed first boot"
	inside journalctl -u berth-agent-first-boot --no-pager -o cat >"$work/first-boot-broken.log" || true
	grep -q "user data $user_data, line 4: berth: unknown field \`scheduler-endpoint\`" "$work/first-boot-broken.log" ||
		{ cat "$work/first-boot-broken.log" >&2; fail "the first boot's message does not name line 4"; }
	inside test ! -e /etc/berth/first-boot.toml || fail "the first boot wrote its file from broken user data"
	say "refused: $(grep -m1 'line 4' "$work/first-boot-broken.log")"
	inside systemctl reset-failed berth-agent-first-boot.service berth-agent.service
fi
printf '%s' "$good_user_data" | inside tee "$user_data" >/dev/null

say "systemctl start berth-agent"
inside timeout "$deadline" systemctl start berth-agent.service ||
	{
		inside journalctl -u berth-agent --no-pager -o cat | tail -30 >&2
		inside timeout 10 berth-agent --config /etc/berth/agent.toml 2>&1 | tail -5 >&2 || true
		fail "systemctl start berth-agent"
	}
registered() { prop berth-agent.service StatusText | grep -q "^registered as .* in default"; }
wait_for "a STATUS line 'registered as <instance> in default'" registered
say "status: $(prop berth-agent.service StatusText)"
[ "$(inside stat -c %a /etc/berth/first-boot.toml)" = 600 ] || fail "/etc/berth/first-boot.toml is not mode 0600"
inside grep -q "^# from user data $user_data, line 5" /etc/berth/first-boot.toml ||
	fail "first-boot.toml does not name the user data line of scheduler_endpoint"
say "first boot: $(inside grep -c '^# from ' /etc/berth/first-boot.toml) keys from the user data into /etc/berth/first-boot.toml"

if [ "$mode" = bench ]; then
	# Monotonic microseconds: systemd's unit timestamps and journal entries' receive times
	# (the container shares the host's monotonic clock and its journal is its own).
	mono() { prop "$1" "$2"; }
	first_heartbeat_after() {
		inside journalctl -u berth-scheduler.service -o export --no-pager \
			--grep 'first heartbeat of the session' 2>/dev/null |
			sed -n 's/^__MONOTONIC_TIMESTAMP=//p' | awk -v t="$1" '$1 > t { print; exit }'
	}
	measure() {
		local kind="$1" first_unit="$2" started ready beat end
		# The start job of the first unit that ran: the first boot's on a first start (the
		# agent's own start waits for it), the agent's on a restart.
		started="$(mono "$first_unit" InactiveExitTimestampMonotonic)"
		ready="$(mono berth-agent.service ActiveEnterTimestampMonotonic)"
		end=$((SECONDS + deadline))
		until beat="$(first_heartbeat_after "$started")" && [ -n "$beat" ]; do
			[ $SECONDS -lt $end ] || fail "no first heartbeat at the scheduler ${deadline}s after a $kind start"
			sleep 0.2
		done
		echo "$kind $(((ready - started) / 1000)) $(((beat - started) / 1000))" >>"$work/bench.txt"
	}
	: >"$work/bench.txt"
	say "bench: $rounds first starts and $rounds restarts"
	for _ in $(seq 1 "$rounds"); do
		inside systemctl stop berth-agent.service berth-agent-first-boot.service
		inside rm -rf /etc/berth/first-boot.toml /var/lib/berth/*
		inside timeout "$deadline" systemctl start berth-agent.service || fail "a first start"
		measure first-start berth-agent-first-boot.service
		inside systemctl stop berth-agent.service
		inside timeout "$deadline" systemctl start berth-agent.service || fail "a restart"
		measure restart berth-agent.service
	done
	echo
	echo "systemctl start berth-agent, in a booted Debian 12 root (systemd-nspawn), binaries of $bin_dir, $rounds runs each"
	for kind in first-start restart; do
		for col in 2 3; do
			what="-> READY=1"
			[ "$col" = 3 ] && what="-> first heartbeat at the scheduler"
			awk -v k="$kind" -v c="$col" '$1 == k { print $c }' "$work/bench.txt" | sort -n |
				awk -v label="$kind $what" '{ v[NR] = $1 } END {
					i50 = int((NR - 1) * 0.50) + 1; i95 = int((NR - 1) * 0.95) + 1
					printf "  %-52s p50 %6d ms  p95 %6d ms  max %6d ms\n", label, v[i50], v[i95], v[NR]
				}'
		done
	done
	echo "  (first-start: first boot (no user data; the root's network is private, so the metadata"
	echo "   service is unreachable at once), containerd connect, store created, registration as a new instance;"
	echo "   restart: a registered host, its store and identity on disk)"
	exit 0
fi

say "systemctl kill -s KILL berth-agent"
pid_before="$(prop berth-agent.service MainPID)"
restarts_before="$(prop berth-agent.service NRestarts)"
inside systemctl kill -s KILL berth-agent.service
restarted() {
	[ "$(prop berth-agent.service NRestarts)" -gt "$restarts_before" ] &&
		[ "$(prop berth-agent.service ActiveState)" = active ] &&
		[ "$(prop berth-agent.service MainPID)" != "$pid_before" ]
}
wait_for "berth-agent restarted after SIGKILL" restarted
wait_for "the restarted agent registered again" registered

# A running container (containerd's, in a namespace of its own), to see that stopping and
# upgrading the agent leave it alone.
container=false
ctr_in() { inside ctr --namespace berth-nspawn-test "$@"; }
if ctr_in images import --index-name docker.io/library/busybox:nspawn /var/tmp/busybox-oci.tar >"$work/ctr.log" 2>&1 &&
	ctr_in run -d docker.io/library/busybox:nspawn sleeper /bin/busybox sleep 86400 >>"$work/ctr.log" 2>&1; then
	container=true
	running() { ctr_in task ls | grep -Eq '^sleeper[[:space:]]+[0-9]+[[:space:]]+RUNNING'; }
	wait_for "the container is RUNNING" running
	sleeper_pid="$(ctr_in task ls | awk '$1 == "sleeper" { print $2 }')"
else
	cgroup_fs="$(inside stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)"
	if [ "$cgroup_fs" != cgroup2fs ] && ! inside test -w /sys/fs/cgroup/pids; then
		why="this host has cgroup v1 (/sys/fs/cgroup is $cgroup_fs), whose hierarchies systemd-nspawn mounts read-only in the container, so runc cannot create the container's cgroup"
	else
		why="ctr run failed"
	fi
	say "NOT RUN: a container started inside the booted root (ctr run of busybox on the root's containerd and runc): $why; ctr said: $(tail -n 3 "$work/ctr.log" | tr '\n' ' ')"
	say "NOT RUN: therefore 'systemctl stop berth-agent leaves a running container running' and 'an upgrade keeps the container'"
	say "(everything else ran: install, first boot, start, STATUS, SIGKILL restart, stop, upgrade keeping agent.toml)"
fi

say "systemctl stop berth-agent"
inside timeout "$deadline" systemctl stop berth-agent.service
[ "$(prop berth-agent.service ActiveState)" = inactive ] || fail "berth-agent did not stop"
if $container; then
	running || fail "stopping berth-agent stopped the container"
	[ "$(ctr_in task ls | awk '$1 == "sleeper" { print $2 }')" = "$sleeper_pid" ] || fail "the container's process changed"
	say "the container still runs (pid $sleeper_pid)"
fi

say "upgrade to $version+nspawn1"
inside systemctl start berth-agent.service
wait_for "berth-agent registered before the upgrade" registered
pid_before="$(prop berth-agent.service MainPID)"
inside dpkg -i /var/tmp/berth-new.deb >"$work/dpkg-upgrade.log" 2>&1 || { cat "$work/dpkg-upgrade.log" >&2; fail "dpkg -i (upgrade)"; }
[ "$(inside dpkg-query -W -f='${Version}' berth)" = "$version+nspawn1" ] || fail "the new version is not installed"
inside grep -q '^heartbeat_interval = "5s"' /etc/berth/agent.toml || fail "the upgrade replaced the edited agent.toml"
inside test -e /etc/berth/first-boot.toml || fail "the upgrade removed first-boot.toml"
upgraded() { [ "$(prop berth-agent.service ActiveState)" = active ] && [ "$(prop berth-agent.service MainPID)" != "$pid_before" ]; }
wait_for "berth-agent restarted by the upgrade" upgraded
wait_for "the upgraded agent registered" registered
if $container; then
	running || fail "the upgrade stopped the container"
	[ "$(ctr_in task ls | awk '$1 == "sleeper" { print $2 }')" = "$sleeper_pid" ] || fail "the container's process changed in the upgrade"
	ctr_in task kill -s KILL sleeper >/dev/null 2>&1 || true
fi
say "passed"
