/**
 * ROOT/guard/bin/slot-exec: what edge-plc-bridge.service starts (deploy/systemd/). A POSIX shell
 * script, installed with the boot guard outside the slots (ota/guard-install.ts), that runs
 * `edge-agent ARG...` from the ACTIVE slot on that slot's own Node.js:
 *
 *   ROOT/guard/bin/slot-exec ROOT [NODE_FLAG...] -- ARG...
 *
 * Why a shell script: the unit's main PID must be the bridge itself (Type=notify, its watchdog,
 * a handover's MAINPID=), and the bridge must run on its slot's runtime, not on the guard's, so
 * that a runtime upgrade is health-gated and rolled back with its release. Node.js 20 cannot
 * replace its own process image (no execve), a shell can: the script asks the guard's runtime
 * which slot is active (ota/slot-entry.js --resolve prints the slot's runtime and entry point;
 * a slot without a runtime of its own, as in a development install, gets the guard's Node.js),
 * then `exec`s that runtime with the flags and the slot's entry point, in this same process.
 *
 * The guard's runtime is ROOT/guard/runtime/bin/node, or `node` on the PATH when the guard was
 * installed without one (a development install). WATCHDOG_PID is dropped as slot-entry.js does
 * (a handover's successor must take the watchdog). Exit status: slot-entry.js's when it cannot
 * resolve the slot (78 not installed, 1 unusable), 64 without `--`, else the program's own.
 */
export const SLOT_EXEC = 'bin/slot-exec';

export const SLOT_EXEC_SCRIPT = `#!/bin/sh
# ROOT/guard/bin/slot-exec ROOT [NODE_FLAG...] -- ARG...
# Runs \`edge-agent ARG...\` from the active slot on that slot's own Node.js, in this process
# (exec). Installed with the boot guard; see ota/slot-exec.ts in the agent's sources.
set -eu
if [ "$#" -lt 1 ]; then
    echo "usage: slot-exec ROOT [NODE_FLAG...] -- ARG..." >&2
    exit 64
fi
root=$1
shift
guard_node=$root/guard/runtime/bin/node
[ -x "$guard_node" ] || guard_node=node
plan=$("$guard_node" "$root/guard/ota/slot-entry.js" --root "$root" --resolve) || exit $?
node=\${plan%%"
"*}
cli=\${plan#*"
"}
# "$@" is NODE_FLAG... -- ARG...; rebuilt in place as NODE_FLAG... CLI ARG...
n=$#
i=0
found=no
while [ "$i" -lt "$n" ]; do
    a=$1
    shift
    i=$((i + 1))
    if [ "$found" = no ] && [ "$a" = -- ]; then
        found=yes
        set -- "$@" "$cli"
    else
        set -- "$@" "$a"
    fi
done
if [ "$found" = no ]; then
    echo "usage: slot-exec ROOT [NODE_FLAG...] -- ARG..." >&2
    exit 64
fi
unset WATCHDOG_PID
exec "$node" "$@"
`;
