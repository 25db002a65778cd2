#!/usr/bin/env bash
# The cgroup v2 pass (CI runs it after tests/run.sh; see docs/cgroups.md). Builds the integration
# tests on this host, then runs the cgroup-related ones as root in a throwaway QEMU guest whose
# kernel boots with the cgroup v2 unified hierarchy only (../shared/tools/cgroup2-vm):
#   1. a fresh-boot systemd delegation smoke test: a shell in /sys/fs/cgroup/system.slice/
#      nsplay.service starts `nsplay run` with no cgroup flags; nsplay must move itself to a leaf
#      and run the session under that group (the root's cgroup.subtree_control starts empty);
#   2. tests/sandbox.rs, unchanged (the same suite as on v1 hosts);
#   3. tests/cgroups_v2.rs, with NSPLAY_REQUIRE_CGROUP_V2=1 so that none of it can skip;
#   2b. tests/check_host.rs: `nsplay check-host` must report v2, its controllers and delegation;
#   4. the cgroup-namespace lesson of tests/lessons.rs (cgroup_lesson), end to end as it reads
#      on a v2 host (the v1 host runs every lesson as it reads there). The cgroups lesson is not
#      in this list yet: in the emulated guest its terminal output timed out (90 s for one
#      command's prompt), once in its first step and once in its pids step.
#   5. the probe that a lesson check's programs run in the session's relay group (v2's
#      cgroup.procs moves; tests/probes.rs, a_checks_programs_are_charged_to_the_session);
#   6. a classroom room's limits on its learners' v2 groups, prepared sessions included, and the
#      lesson text naming them (tests/classroom.rs, a_rooms_limits_…);
#   7. sessions on an image (tests/images.rs, the tests with "session" in their names: the
#      image's files and whiteouts, capped writes, the server's image sessions),
#      with the image store on ext4 (see ext4_tmp);
#   8. a container with the least privileges of docs/scale-out.md (podman and runc, the
#      Containerfile's ENTRYPOINT), nsplay in it running a session (container_smoke).
# The guest emulates its CPU, so only prebuilt test binaries run there. Takes several minutes
# after the build (the VM boots in ~5 s; on a loaded 2-core host: sandbox 134 s, cgroups_v2
# 139 s, the cgroup lessons a few minutes more). Needs root (it passes the tests' own
# requirement on).
#
# Usage: tests/v2-pass.sh
# Env: CGROUP2_VM (default ../shared/tools/cgroup2-vm), V2_TEST_THREADS (default 2: the guest
# has 2 vCPUs), V2_TIMEOUT (seconds for the whole guest run, default 900: the cgroup lesson
# takes a few minutes of it in the emulated guest), V2_STEP_TIMEOUT (seconds for one step in the
# guest, default 420).
set -euo pipefail
cd "$(dirname "$0")/.."

in_guest() {
    local threads=$1 bin=$2
    shift 2
    export NSPLAY_REQUIRE_CGROUP_V2=1
    # A session that failed to start closes the pipe the smoke test writes to: no SIGPIPE death.
    trap '' PIPE
    if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
        echo "v2-pass: /sys/fs/cgroup is not cgroup2 in the guest" >&2
        return 1
    fi
    echo "v2-pass: guest kernel $(uname -r), cgroup2 at /sys/fs/cgroup, root cgroup.subtree_control: [$(cat /sys/fs/cgroup/cgroup.subtree_control)]"
    local status=0 rc
    # The heartbeat sleeps on a FIFO of its own.
    mkfifo "$tick"
    watchdog &
    local dog=$!
    step "delegation smoke test"
    delegation_smoke "$bin" || { status=1; guest_diag; }
    # An argument `binary@filter` runs only the tests whose names contain `filter`; `ext4:binary…`
    # runs it with its temporary directories on ext4 (see ext4_tmp).
    for t in "$@"; do
        local filter=() tmp=${TMPDIR:-/tmp}
        if [ "$t" = container ]; then
            step "container with the least privileges"
            rc=0
            timeout -k 10 "$STEP_TIMEOUT" bash "$0" --container-smoke "$bin" || rc=$?
            [ $rc = 0 ] || { status=1; guest_diag; }
            continue
        fi
        case $t in ext4:*) t=${t#ext4:}; tmp=$(ext4_tmp) || { status=1; continue; } ;; esac
        case $t in *@*) filter=("${t#*@}"); t=${t%%@*} ;; esac
        step "$(basename "$t") ${filter[*]}"
        echo "v2-pass: running $(basename "$t") ${filter[*]} (temporary directories in $tmp)"
        # Bounded per step: a hang fails its own step, with the guest's state, and leaves the
        # rest of the guest's time to the other steps.
        rc=0
        TMPDIR=$tmp timeout -k 10 "$STEP_TIMEOUT" "$t" "${filter[@]}" --test-threads="$threads" || rc=$?
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            echo "v2-pass: FAILED: $(basename "$t") ${filter[*]} did not finish in ${STEP_TIMEOUT} s" >&2
        fi
        if [ $rc != 0 ]; then status=1; guest_diag; fi
    done
    kill "$dog" 2>/dev/null || true
    return $status
}

# The guest emulates its CPU, and CI saw it once stop for its whole time limit with nothing
# printed after the smoke test's first line: every step is named and timed, a heartbeat says
# where the guest is, and a failed or overdue step prints what the guest is doing. The heartbeat
# and most of that report use only shell builtins: they still work if the guest cannot fork.
STEP_TIMEOUT=${V2_STEP_TIMEOUT:-420}
step_file=/tmp/v2pass.step
tick=/tmp/v2pass.tick
NOW=0
now() {
    local up _
    read -r up _ </proc/uptime
    NOW=${up%.*}
}
step() {
    now
    printf '%s %s\n' "$NOW" "$1" >"$step_file"
    echo "v2-pass: [$NOW s] step: $1"
}
watchdog() {
    local n=0 since name load procs p _
    exec 7<>"$tick"
    while :; do
        # A read that times out is a sleep without a fork.
        read -r -t 60 -u 7 _ || true
        n=$((n + 1))
        now
        read -r since name <"$step_file" || true
        read -r load _ <"/proc/loadavg" || true
        procs=0
        for p in /proc/[0-9]*; do procs=$((procs + 1)); done
        echo "v2-pass: [$NOW s] still in: $name, for $((NOW - since)) s; load $load; $procs processes" >&2
        # Overdue (the step's timeout should have ended it), or every fifth minute.
        if [ $((NOW - since)) -gt $((STEP_TIMEOUT + 30)) ] || [ $((n % 5)) = 0 ]; then
            guest_diag
        fi
    done
}
guest_diag() {
    local p st rest comm state ppid wchan cg since name
    now
    read -r since name <"$step_file" || true
    {
        echo "--- v2-pass: guest state at $NOW s of uptime (step: $name, for $((NOW - since)) s)"
        echo "pid ppid state comm wchan cgroup (user processes, and every blocked task)"
        for p in /proc/[0-9]*; do
            read -r st <"$p/stat" 2>/dev/null || continue
            comm=${st#*(}
            comm=${comm%)*}
            rest=${st##*) }
            state=${rest%% *}
            rest=${rest#* }
            ppid=${rest%% *}
            [ "$ppid" != 2 ] && [ "${p#/proc/}" != 2 ] || [ "$state" = D ] || continue
            wchan=
            read -r wchan <"$p/wchan" 2>/dev/null || true
            cg=
            read -r cg <"$p/cgroup" 2>/dev/null || true
            echo "${p#/proc/} $ppid $state $comm ${wchan:-0} ${cg#0::}"
        done
        # Blocked tasks with their kernel stacks, into the kernel's log. Reading that log takes a
        # fork (bash cannot read /dev/kmsg): last, so that a guest that cannot fork has already
        # shown its processes above.
        echo w >/proc/sysrq-trigger 2>/dev/null || true
        echo "--- kernel log (last 60 lines):"
        dmesg 2>/dev/null | tail -n 60
        echo "--- end of guest state"
    } >&2
}

# The guest's files are 9p and tmpfs, and its 6.1 kernel idmaps neither (tmpfs from 6.3): the
# image store of a session on an image must be on a filesystem that idmaps, as on a real host
# (docs/images.md, "Requirement"). An ext4 file system on a loop device in the guest's tmpfs.
ext4_tmp() {
    local img=/tmp/v2pass-ext4.img dir=/tmp/v2pass-ext4
    if ! mountpoint -q "$dir"; then
        modprobe loop 2>/dev/null || true
        truncate -s 1G "$img" && mkfs.ext4 -q "$img" && mkdir -p "$dir" && mount -o loop "$img" "$dir" ||
            { echo "v2-pass: cannot make an ext4 file system on a loop device for the image tests" >&2; return 1; }
        chmod 1777 "$dir"
    fi
    echo "$dir"
}

# A shell in the service group starts nsplay, as systemd's ExecStart=/bin/sh -c '…' would.
delegation_smoke() {
    local bin=$1 svc=/sys/fs/cgroup/system.slice/nsplay.service
    # The state directory is left for nsplay to create (with the mode it needs).
    local dir=/tmp/v2pass.state fifo=/tmp/v2pass.in out=/tmp/v2pass.out fail=0
    echo "v2-pass: delegation smoke test in $svc"
    mkdir -p "$svc"
    mkfifo "$fifo"
    # shellcheck disable=SC2016
    sh -c 'echo $$ > "$1/cgroup.procs" || exit 99; "$2" run --state-dir "$3" -- sh -c "echo re\"\"ady; read x; echo bye"; echo "nsplay-exit=$?"' \
        - "$svc" "$bin" "$dir" <"$fifo" >"$out" 2>&1 &
    local shell=$!
    # Read-write: never blocks, even if the shell above died before opening its end.
    exec 3<>"$fifo"
    # Deadlines in seconds, not in rounds: under emulation a round of grep and sleep is slow.
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt 60 ] && ! grep -q ready "$out"; do
        sleep 0.2
    done
    echo "  the session printed ready after $((SECONDS - t0)) s"
    check() {
        if eval "$1"; then echo "  ok: $2"; else echo "  FAILED: $2" >&2; fail=1; fi
    }
    check 'grep -q ready "$out"' "the session started"
    check '[ -z "$(cat "$svc/cgroup.procs")" ]' "no process left in $svc itself"
    check 'grep -qx "$shell" "$svc/supervisor/cgroup.procs"' "the starting shell moved to $svc/supervisor"
    check '[ "$(wc -l <"$svc/supervisor/cgroup.procs")" -ge 3 ]' "nsplay and its spawner are in the leaf too"
    check '(for c in memory pids cpu; do grep -qw $c "$svc/cgroup.subtree_control" || exit 1; done)' \
        "+memory +pids +cpu enabled in $svc/cgroup.subtree_control"
    local all=$svc/sessions groups
    check '(for c in memory pids cpu; do grep -qw $c "$all/cgroup.subtree_control" || exit 1; done)' \
        "+memory +pids +cpu enabled in $all/cgroup.subtree_control"
    check '[ "$(cat "$all/memory.max")" != max ] && [ "$(cat "$all/pids.max")" = 16384 ] && [ "$(cat "$all/cpu.weight")" = 100 ]' \
        "the sessions group $all has the parent limits (memory.max $(cat "$all/memory.max"))"
    check '[ "$(cat "$svc/memory.max")" = max ]' "the service group's own limits are left alone"
    groups=$(find "$all" -mindepth 1 -maxdepth 1 -type d -name 'nsplay-*' ! -name '*.relay')
    check '[ "$(echo "$groups" | grep -c .)" = 1 ]' "exactly one session group under $all"
    local g=${groups%%$'\n'*}
    check '[ "$(cat "$g.relay/pids.max")" = 16 ] && [ "$(cat "$g.relay/cpu.max")" = "50000 100000" ]' \
        "its relay group $g.relay is beside it, with its limits"
    check '[ "$(cat "$g/memory.max")" = 268435456 ] && [ "$(cat "$g/pids.max")" = 128 ] && [ "$(cat "$g/cpu.max")" = "50000 100000" ]' \
        "the session group has the default limits"
    check '[ ! -e "$g/memory.swap.max" ] || [ "$(cat "$g/memory.swap.max")" = 0 ]' "memory.swap.max is 0"
    check '[ -n "$(cat "$g/cgroup.procs")" ]' "the session's processes are in its group"
    check '[ ! -e /sys/fs/cgroup/nsplay ]' "the default parent /sys/fs/cgroup/nsplay was not used"
    echo go >&3 || true
    exec 3>&-
    # Bounded: a session that never ends must fail this pass with its output, not hang it.
    t0=$SECONDS
    while [ $((SECONDS - t0)) -lt 30 ] && kill -0 "$shell" 2>/dev/null; do
        sleep 0.2
    done
    kill "$shell" 2>/dev/null || true
    wait "$shell" || true
    check 'grep -q bye "$out" && grep -q "nsplay-exit=0" "$out"' "the session ended normally"
    check '[ ! -e "$all" ]' "no session or relay group left behind, and the sessions group is gone"
    if [ $fail != 0 ]; then
        echo "--- output of nsplay run:" >&2
        cat "$out" >&2
    fi
    rm -rf "$dir" "$fifo" "$out"
    return $fail
}

# The least privileges of docs/scale-out.md, run: podman (runc, as root, cgroupfs: the guest has
# no systemd) starts a container with exactly those options and the Containerfile's own
# ENTRYPOINT, and nsplay in it runs a session. The container's root is a bind of the guest's own
# (the host's files: the image's packages are the Containerfile's business, tests/deploy.rs
# builds it), with the binary where the Containerfile puts it; podman's store is on ext4.
LEAST_PRIVILEGES=(--cgroupns=private --userns=host --cap-add SYS_ADMIN --cap-add SYS_PTRACE
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt unmask=ALL)
container_smoke() {
    local bin=$1 store root=/tmp/v2pass-rootfs out=/tmp/v2pass-container.out fail=0 entry
    store=$(ext4_tmp) || return 1
    entry=$(python3 -c 'import json,re,sys; print(json.dumps(json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", open(sys.argv[1]).read(), re.M).group(1))))' deploy/Containerfile) ||
        { echo "  FAILED: no ENTRYPOINT [...] line in deploy/Containerfile" >&2; return 1; }
    echo "v2-pass: a container with ${LEAST_PRIVILEGES[*]}, entrypoint $entry"
    mkdir -p "$root" && mount --bind / "$root"
    local podman=(podman --runtime runc --cgroup-manager cgroupfs --events-backend none --storage-driver vfs
        --root "$store/podman" --runroot /run/v2pass-podman)
    # shellcheck disable=SC2016
    "${podman[@]}" run --rm --network none --hostname container "${LEAST_PRIVILEGES[@]}" \
        -v "$bin:/usr/local/bin/nsplay:ro" --entrypoint "$entry" --rootfs "$root" \
        run -- sh -c 'hostname in-a-session; echo in-a-session-$((6*7)); uname -n; cat /proc/self/uid_map
            unshare -n sh -c "mount -t sysfs sysfs /sys && ls /sys/class/net | tr -d \"\n\"; echo :nested-sysfs"' \
        >"$out" 2>&1
    echo "container-exit=$?" >>"$out"
    # The session's lines come through its terminal: CR LF.
    sed -i 's/\r$//' "$out"
    umount "$root" 2>/dev/null || true
    check() {
        if eval "$1"; then echo "  ok: $2"; else echo "  FAILED: $2" >&2; fail=1; fi
    }
    check 'grep -qx in-a-session-42 "$out" && grep -qx container-exit=0 "$out"' "a session ran in the container"
    check 'grep -qx in-a-session "$out"' "with a hostname of its own"
    check 'grep -Eq "^ +0 +1000000000 +65536$" "$out"' "its root mapped to the default unprivileged id range"
    check 'grep -qx lo:nested-sysfs "$out"' "a nested network namespace mounts its own sysfs"
    # The container's group is libpod_parent/libpod-<id> (podman's own libpod_parent and its
    # conmon group stay); nsplay's leaf and session groups were below it.
    local left
    left=$(find /sys/fs/cgroup -mindepth 1 \( -name 'libpod-*' -o -name 'nsplay-*' \))
    check '[ -z "$left" ]' "nothing of it left in the guest's cgroups${left:+: $left}"
    if [ $fail != 0 ]; then
        echo "--- output of the container:" >&2
        cat "$out" >&2
    fi
    rm -f "$out"
    return $fail
}

if [ "${1:-}" = --container-smoke ]; then
    shift
    container_smoke "$@"
    exit $?
fi
if [ "${1:-}" = --in-guest ]; then
    shift
    in_guest "$@"
    exit $?
fi

vm=${CGROUP2_VM:-../shared/tools/cgroup2-vm}
if [ ! -e "$vm" ]; then
    echo "tests/v2-pass.sh: $vm does not exist: this pass needs the cgroup v2 VM tool (on a cgroup v2 host, tests/run.sh already runs these tests natively)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "tests/v2-pass.sh: needs root (the integration tests create namespaces and cgroups): run it with sudo" >&2
    exit 1
fi
start=$(date +%s)
echo "v2-pass: building the test binaries on the host"
json=$(cargo test --release --no-run --message-format=json --test sandbox --test cgroups_v2 --test lessons --test check_host --test probes --test classroom --test images)
exe() {
    sed -n "s/.*\"target\":{[^}]*\"kind\":\[\"test\"\][^}]*\"name\":\"$1\"[^}]*}.*\"executable\":\"\([^\"]*\)\".*/\1/p" <<<"$json" | tail -1
}
sandbox=$(exe sandbox)
cgroups_v2=$(exe cgroups_v2)
lessons=$(exe lessons)
check_host=$(exe check_host)
probes=$(exe probes)
classroom=$(exe classroom)
images=$(exe images)
bin=$PWD/target/release/nsplay
for f in "$sandbox" "$cgroups_v2" "$lessons" "$check_host" "$probes" "$classroom" "$images" "$bin"; do
    [ -n "$f" ] && [ -x "$f" ] || { echo "tests/v2-pass.sh: a test binary is missing after the build (${f:-?})" >&2; exit 1; }
done
# The container step runs the host's podman and runc in the guest.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc
fi
# The options the container step runs are the ones the Containerfile and docs/scale-out.md give.
for f in deploy/Containerfile docs/scale-out.md; do
    flat=$(tr -s ' \\\n' ' ' <"$f")
    for ((i = 0; i < ${#LEAST_PRIVILEGES[@]}; i++)); do
        o=${LEAST_PRIVILEGES[i]}
        case $o in --cap-add | --security-opt) o="$o ${LEAST_PRIVILEGES[i + 1]}"; i=$((i + 1)) ;; esac
        grep -qF -- "$o" <<<"$flat" || { echo "tests/v2-pass.sh: $f does not give \`$o\`, which the container step runs with" >&2; exit 1; }
    done
done
echo "v2-pass: build done in $(($(date +%s) - start)) s; starting the cgroup v2 guest"
run=("$vm")
[ -x "$vm" ] || run=(bash "$vm")
status=0
"${run[@]}" --timeout "${V2_TIMEOUT:-900}" -- bash "$PWD/tests/v2-pass.sh" --in-guest "${V2_TEST_THREADS:-2}" "$bin" "$check_host" "$sandbox" "$cgroups_v2" "$lessons@cgroup_lesson" "$probes@a_checks_programs_are_charged_to_the_session" \
    "$classroom@a_rooms_limits_reach_its_sessions_cgroups" "ext4:$images@session" container || status=$?
if [ $status = 124 ]; then
    echo "v2-pass: FAILED: the guest did not finish within ${V2_TIMEOUT:-900} s; its last step, heartbeat and state report above say where it was" >&2
fi
echo "v2-pass: finished in $(($(date +%s) - start)) s (exit $status)"
exit $status
