#!/usr/bin/env bash
# Berth's .deb under a real systemd: a Debian 12 root made with mmdebstrap boots in
# systemd-nspawn (its own network namespace: no traffic leaves it, and the host's own services
# are never touched), the package is installed inside, and the test checks what an operator
# relies on:
#   - install enables berth-agent and does not start it while it has no scheduler;
#   - berth-scheduler.service reaches active (READY=1) with its STATUS line, and a scheduler
#     that stops its watchdog pings (SIGSTOP, under a 5 s WatchdogSec= drop-in) is restarted;
#   - the first boot (berth-agent-first-boot.service) refuses broken user data, naming its
#     line, and the agent does not start; with good user data (a berth: section where
#     cloud-init leaves it) it writes /etc/berth/first-boot.toml (0600) and the agent takes its
#     scheduler endpoint from there;
#   - `systemctl start berth-agent` reaches active with the STATUS line naming its instance;
#   - `systemctl kill -s KILL berth-agent` is followed by a restart;
#   - a Berth task (busybox, run by the agent through the root's containerd and runc) runs, and
#     its log lines carry TASK_ID= and CONTAINER_NAME= in the journal, so
#     `journalctl -u berth-agent TASK_ID=<id>` finds them (checked with -o json);
#   - an agent that stops its watchdog pings (SIGSTOP, under the drop-in) is restarted, and
#     the task's container keeps running;
#   - `systemctl stop berth-agent` leaves the running container running (same process), and
#     the agent started again takes the task back;
#   - an upgrade to a newer build keeps the edited config and the container, and restarts the
#     agent;
#   - `dpkg -r` stops both services and masks them, keeps /etc/berth and the data dirs, and
#     leaves the container running; `dpkg -P` then removes the conffiles, first-boot.toml,
#     /var/lib/berth, /var/lib/berth-scheduler and the units' enablement and mask links.
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
# --system-call-filter=@keyring: nspawn's seccomp filter refuses the keyring calls, with which
# runc gives each container a session keyring of its own (as on any host).
systemd-nspawn --quiet --directory="$work/root" --boot --private-network --register=no \
	--keep-unit --system-call-filter=@keyring --machine="berth-test-$$" >"$work/console.log" 2>&1 </dev/null &
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

# Gives UNIT a 8 s watchdog (a runtime drop-in), waits for a ping, freezes its main process
# (SIGSTOP: no more pings) and waits for systemd to restart it on the watchdog timeout; then
# the drop-in goes and the unit is restarted with its own WatchdogSec=.
watchdog_restarts() {
	local unit="$1" dropin="/run/systemd/system/$1.d/berth-test-watchdog.conf" pid restarts since
	say "$unit: a frozen main process stops the watchdog pings and is restarted"
	inside mkdir -p "$(dirname "$dropin")"
	printf '[Service]\nWatchdogSec=8s\n' | inside tee "$dropin" >/dev/null
	inside systemctl daemon-reload
	inside timeout "$deadline" systemctl restart "$unit" || fail "restart $unit with an 8 s watchdog"
	[ "$(prop "$unit" WatchdogUSec)" = 8s ] || fail "the drop-in did not set $unit's watchdog"
	since="$(prop "$unit" WatchdogTimestampMonotonic)"
	pinged() { [ "$(prop "$unit" WatchdogTimestampMonotonic)" -gt "$since" ]; }
	wait_for "a watchdog ping from $unit" pinged
	pid="$(prop "$unit" MainPID)"
	restarts="$(prop "$unit" NRestarts)"
	inside systemctl kill --kill-who=main -s STOP "$unit"
	restarted_on_watchdog() {
		[ "$(prop "$unit" NRestarts)" -gt "$restarts" ] && [ "$(prop "$unit" ActiveState)" = active ] &&
			[ "$(prop "$unit" MainPID)" != "$pid" ]
	}
	wait_for "$unit restarted after it stopped pinging" restarted_on_watchdog
	inside journalctl -u "$unit" --no-pager -o cat | grep -q "Watchdog timeout (limit 8s)" ||
		fail "$unit was restarted, but not on its watchdog"
	inside rm -r "$(dirname "$dropin")"
	inside systemctl daemon-reload
	inside timeout "$deadline" systemctl restart "$unit" || fail "restart $unit"
}

state="$(inside timeout "$deadline" systemctl is-system-running --wait || true)"
say "booted: $state"
case "$state" in running | degraded) ;; *) cat "$work/console.log" >&2; fail "boot ended $state" ;; esac

# On a cgroup v1 (or hybrid) host nspawn mounts the controllers' hierarchies read-only in the
# container (only its name=systemd subtree is writable), so runc could not create a
# container's cgroup there. A real host's are writable: make them so, from outside (the
# container's systemd, already booted, keeps managing only its name=systemd subtree). With
# cgroup v2 nspawn delegates a writable subtree and nothing is needed.
cgroups_writable=true
for hierarchy in $(awk '$3 == "cgroup" && $4 ~ /^ro[,]/ { print $2 }' "/proc/$leader/mounts"); do
	if ! nsenter --target "$leader" --mount -- mount -o remount,bind,rw "$hierarchy" 2>"$work/remount.log"; then
		cgroups_writable=false
		say "cannot make $hierarchy writable in the container: $(cat "$work/remount.log")"
	fi
done

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
if [ "$mode" = test ]; then
	# Type=notify: active means READY=1 came; the STATUS line follows the first store read.
	scheduler_serving() { prop berth-scheduler.service StatusText | grep -q '^serving on 127.0.0.1:7709; [0-9]* clusters, [0-9]* container instances$'; }
	wait_for "berth-scheduler's STATUS line 'serving on 127.0.0.1:7709; <n> clusters, <n> container instances'" scheduler_serving
	say "scheduler status: $(prop berth-scheduler.service StatusText)"
	[ "$(prop berth-scheduler.service WatchdogUSec)" = 30s ] || fail "berth-scheduler's watchdog is not 30s"
	watchdog_restarts berth-scheduler.service
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

# A Berth task: busybox (imported into the agent's containerd namespace and used as cached, since
# the root has no registry) run by the agent through the root's containerd and runc. Stopping,
# freezing and upgrading the agent must leave its container running.
ctl() { inside BERTH_ENDPOINT=http://127.0.0.1:7709 berthctl "$@"; }
container=false
if $cgroups_writable; then
	inside ctr --namespace berth images import --index-name docker.io/library/busybox:nspawn \
		/var/tmp/busybox-oci.tar >"$work/ctr.log" 2>&1 || { cat "$work/ctr.log" >&2; fail "ctr images import"; }
	printf '%s' '{"family": "nap", "networkMode": "none", "berth": {"imagePullBehavior": "prefer-cached"},
		"containerDefinitions": [{"name": "nap", "image": "docker.io/library/busybox:nspawn", "memory": 32,
		"command": ["/bin/busybox", "sleep", "86400"]}]}' | inside tee /var/tmp/nap.json >/dev/null
	ctl register-task-definition --file /var/tmp/nap.json >/dev/null || fail "register-task-definition"
	task="$(ctl run-task --task-definition nap)" || fail "run-task"
	say "task $task"
	running() { inside ctr --namespace berth task ls | grep -Eq "^$task\.nap[[:space:]]+[0-9]+[[:space:]]+RUNNING"; }
	task_running() {
		ctl -o json describe-tasks "$task" 2>/dev/null |
			python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["tasks"][0]["lastStatus"] != "RUNNING")' 2>/dev/null
	}
	end=$((SECONDS + deadline))
	until task_running; do
		if [ $SECONDS -ge $end ]; then
			ctl describe-tasks "$task" >&2 || true
			inside journalctl -u berth-agent --no-pager -o cat | tail -20 >&2
			fail "after ${deadline}s: the Berth task $task is not RUNNING"
		fi
		sleep 0.5
	done
	wait_for "the task's container is RUNNING in containerd" running
	container=true
	sleeper_pid() { inside ctr --namespace berth task ls | awk -v id="$task.nap" '$1 == id { print $2 }'; }
	pid_of_nap="$(sleeper_pid)"
	same_container() { running && [ "$(sleeper_pid)" = "$pid_of_nap" ]; }

	# journald: the task's events carry TASK_ID= (the task's span) and, per container,
	# CONTAINER_NAME=, as journal fields of the berth-agent unit.
	say "journalctl -u berth-agent TASK_ID=$task"
	task_journal() {
		inside journalctl -u berth-agent.service "TASK_ID=$task" -o json --no-pager >"$work/task-journal.json" 2>/dev/null &&
			python3 - "$work/task-journal.json" "$task" <<'PY'
import json, sys
entries = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
task = sys.argv[2]
seen = {(e.get("MESSAGE"), e.get("CONTAINER_NAME")) for e in entries}
sys.exit(0 if entries
         and all(e.get("TASK_ID") == task and e.get("_SYSTEMD_UNIT") == "berth-agent.service" for e in entries)
         and ("task assigned", None) in seen and ("starting container", "nap") in seen else 1)
PY
	}
	wait_for "journal entries of berth-agent with TASK_ID=$task ('task assigned') and CONTAINER_NAME=nap ('starting container')" task_journal
	inside journalctl -u berth-agent.service "TASK_ID=$task" CONTAINER_NAME=nap -o cat --no-pager | grep -qx "starting container" ||
		fail "journalctl -u berth-agent TASK_ID=$task CONTAINER_NAME=nap does not find 'starting container'"
	say "journal: $(grep -c . "$work/task-journal.json") entries with TASK_ID=$task, fields $(python3 -c '
import json, sys
keys = set()
for line in open(sys.argv[1]):
    keys |= {k for k in json.loads(line) if not k.startswith("_") and k.isupper()}
print(" ".join(sorted(k for k in keys if k in ("TASK_ID", "CONTAINER_NAME", "IMAGE_REF", "MESSAGE", "PRIORITY"))))
' "$work/task-journal.json")"

	watchdog_restarts berth-agent.service
	wait_for "the agent restarted by its watchdog registered" registered
	same_container || fail "the agent's watchdog restart touched the container"
	say "the container still runs (pid $pid_of_nap)"
else
	say "NOT RUN: a container inside the booted root: the cgroup hierarchies could not be made writable (above), so runc cannot create a container's cgroup"
	say "NOT RUN: therefore the task's journal fields, 'systemctl stop berth-agent leaves a running container running' and 'an upgrade keeps the container'"
	[ "${CI:-}" = true ] && fail "a container could not run inside the booted root"
fi

say "systemctl stop berth-agent"
inside timeout "$deadline" systemctl stop berth-agent.service
[ "$(prop berth-agent.service ActiveState)" = inactive ] || fail "berth-agent did not stop"
if $container; then
	same_container || fail "stopping berth-agent stopped the container"
	say "the container still runs (pid $pid_of_nap)"
fi

say "systemctl start berth-agent: the task is taken back"
inside timeout "$deadline" systemctl start berth-agent.service || fail "start berth-agent again"
tasks_now=0
$container && tasks_now=1
with_task() { prop berth-agent.service StatusText | grep -Eq "^registered as .* in default; $tasks_now tasks? running$"; }
wait_for "a STATUS line 'registered as <instance> in default; $tasks_now task(s) running'" with_task
if $container; then
	same_container || fail "starting the agent again replaced the container"
	task_running || fail "the task is no longer RUNNING after the agent's restart"
fi

say "upgrade to $version+nspawn1"
pid_before="$(prop berth-agent.service MainPID)"
inside dpkg -i /var/tmp/berth-new.deb >"$work/dpkg-upgrade.log" 2>&1 || { cat "$work/dpkg-upgrade.log" >&2; fail "dpkg -i (upgrade)"; }
[ "$(inside dpkg-query -W -f='${Version}' berth)" = "$version+nspawn1" ] || fail "the new version is not installed"
inside grep -q '^heartbeat_interval = "5s"' /etc/berth/agent.toml || fail "the upgrade replaced the edited agent.toml"
inside test -e /etc/berth/first-boot.toml || fail "the upgrade removed first-boot.toml"
upgraded() { [ "$(prop berth-agent.service ActiveState)" = active ] && [ "$(prop berth-agent.service MainPID)" != "$pid_before" ]; }
wait_for "berth-agent restarted by the upgrade" upgraded
wait_for "the upgraded agent registered with its task" with_task
if $container; then
	same_container || fail "the upgrade stopped or replaced the container"
	say "the container still runs (pid $pid_of_nap)"
fi

say "dpkg -r berth"
inside dpkg -r berth >"$work/dpkg-remove.log" 2>&1 || { cat "$work/dpkg-remove.log" >&2; fail "dpkg -r"; }
for unit in berth-agent.service berth-scheduler.service berth-agent-first-boot.service; do
	[ "$(prop "$unit" ActiveState)" = inactive ] || fail "$unit still $(prop "$unit" ActiveState) after dpkg -r"
done
for unit in berth-agent.service berth-scheduler.service; do
	[ "$(inside systemctl is-enabled "$unit" || true)" = masked ] || fail "$unit is not masked after dpkg -r"
done
inside test ! -e /usr/bin/berth-agent || fail "dpkg -r left /usr/bin/berth-agent"
inside grep -q '^heartbeat_interval = "5s"' /etc/berth/agent.toml || fail "dpkg -r did not keep the edited agent.toml"
for kept in /etc/berth/first-boot.toml /etc/default/berth-agent /var/lib/berth/instance-identity /var/lib/berth/agent.redb /var/lib/berth-scheduler/scheduler.redb; do
	inside test -e "$kept" || fail "dpkg -r removed $kept"
done
if $container; then
	same_container || fail "dpkg -r stopped the container"
	say "the container still runs (pid $pid_of_nap)"
fi

say "dpkg -P berth"
inside dpkg -P berth >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg -P"; }
for gone in /etc/berth /etc/default/berth-agent /var/lib/berth /var/lib/berth-scheduler \
	/etc/systemd/system/berth-agent.service /etc/systemd/system/berth-scheduler.service \
	/etc/systemd/system/multi-user.target.wants/berth-agent.service; do
	inside test ! -e "$gone" -a ! -L "$gone" || fail "dpkg -P left $gone"
done
inside dpkg-query -W berth >/dev/null 2>&1 && fail "dpkg -P left berth known to dpkg"
if $container; then
	# Purge takes the agent's state, not containers (postrm says so): they are containerd's.
	running || fail "dpkg -P stopped the container"
	inside ctr --namespace berth task kill -s KILL "$task.nap" >/dev/null 2>&1 || true
fi
say "passed"
