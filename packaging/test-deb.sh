#!/usr/bin/env bash
# The package on this machine, as an operator installs it (root): builds it,
# runs lintian and `dpkg -i`, verifies the systemd units, starts the
# installed vswitchd on the packaged configuration adapted to virtual
# devices with a notify socket of the test's own (no systemd as PID 1
# needed): READY, a vswitchctl answer, reload, STOPPING on SIGTERM; then
# removes the package (only the conffile stays) and purges it (nothing
# stays). Fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-deb: $*"; exit 1; }
# Output is read whole before it is searched: with pipefail, `cmd | grep -q`
# fails whenever grep stops reading before cmd has written all (SIGPIPE).
has() { local out; out=$("${@:2}") && grep -qF -- "$1" <<< "$out"; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
if dpkg -s vswitch >/dev/null 2>&1; then
  fail "a vswitch package is installed already; remove it first (dpkg -P vswitch)"
fi

deb=$(bash packaging/build-deb.sh)
echo "test-deb: built $deb ($(du -h "$deb" | cut -f1))"
lintian --fail-on error,warning --tag-display-limit 0 "$deb" 2>&1 | grep -v 'root privileges' || true
lintian --fail-on error,warning "$deb" >/dev/null 2>&1 || fail "lintian reports errors or warnings (above)"

work=$(mktemp -d)
socat_pid=
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null || true
  [ -n "$socat_pid" ] && kill "$socat_pid" 2>/dev/null || true
  dpkg -P vswitch >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

dpkg -i "$deb"
for f in /usr/sbin/vswitchd /usr/bin/vswitchctl /etc/vswitch/vswitchd.toml /lib/systemd/system/vswitchd.service \
  /lib/systemd/system/vswitch-hugepages.service /usr/share/man/man8/vswitchd.8.gz /usr/share/man/man8/vswitchctl.8.gz \
  /usr/share/bash-completion/completions/vswitchctl /usr/share/doc/vswitch/config.md; do
  [ -e "$f" ] || fail "$f is not installed"
done
grep -qx /etc/vswitch/vswitchd.toml /var/lib/dpkg/info/vswitch.conffiles || fail "the config is not a conffile"
systemd-analyze verify /lib/systemd/system/vswitchd.service /lib/systemd/system/vswitch-hugepages.service \
  || fail "systemd-analyze verify found problems in the units"
has 'pmd\-cores' zcat /usr/share/man/man8/vswitchd.8.gz || fail "the man page lacks the options"

# The packaged configuration on virtual devices: the same file with the
# NIC's ports on net_null, no hugepages, the last core, a socket of ours.
last=$(($(nproc) - 1))
sed -e "s|^args = .*|args = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--file-prefix=vsw-deb-$$\"]|" \
    -e "s|^pmd_cores = .*|pmd_cores = [$last]|" \
    -e "s|^socket = .*|socket = \"$work/ctl.sock\"|" \
    -e 's|^listen = .*|listen = "off"|' \
    -e 's|^devargs = "0000:08:00.0"$|devargs = "net_null_deb_up"|' \
    -e 's|^devargs = "0000:08:00.0,representor=vf\[0\]"$|devargs = "net_null_deb_vf"|' \
    /etc/vswitch/vswitchd.toml > "$work/vswitchd.toml"
grep -q net_null_deb_vf "$work/vswitchd.toml" || fail "the packaged config's ports were not found to adapt"
/usr/sbin/vswitchd --check "$work/vswitchd.toml"
has '  hugepages: none needed' /usr/sbin/vswitchd --check "$work/vswitchd.toml" || fail "--check says nothing of hugepages"

socat -u UNIX-RECV:"$work/notify.sock" - > "$work/notify.log" &
socat_pid=$!
for _ in $(seq 50); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET="$work/notify.sock" /usr/sbin/vswitchd "$work/vswitchd.toml" --no-stats 2> "$work/vswitchd.log" &
daemon_pid=$!
for _ in $(seq 300); do grep -q 'READY=1' "$work/notify.log" && break; sleep 0.1; done
grep -q 'READY=1' "$work/notify.log" || { cat "$work/vswitchd.log"; fail "no READY=1 from the installed vswitchd"; }
shown=$(vswitchctl --socket "$work/ctl.sock" show) || fail "vswitchctl show failed"
head -3 <<< "$shown"
has '"packets"' vswitchctl --socket "$work/ctl.sock" --json show || fail "vswitchctl got no answer"
vswitchctl --socket "$work/ctl.sock" reload >/dev/null || fail "reload (what systemctl reload runs) failed"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { cat "$work/vswitchd.log"; fail "vswitchd exited non-zero on SIGTERM"; }
daemon_pid=
for _ in $(seq 50); do grep -q 'STOPPING=1' "$work/notify.log" && break; sleep 0.1; done
grep -q 'STOPPING=1' "$work/notify.log" || fail "no STOPPING=1"
echo "test-deb: notifications: $(tr '\n' ' ' < "$work/notify.log")"

dpkg -r vswitch
left=$(dpkg -L vswitch 2>/dev/null | while read -r f; do [ -f "$f" ] && echo "$f"; done)
[ "$left" = /etc/vswitch/vswitchd.toml ] || fail "after remove, expected only the conffile, found: $left"
[ ! -e /usr/sbin/vswitchd ] || fail "/usr/sbin/vswitchd left after remove"
dpkg -P vswitch
[ ! -e /etc/vswitch ] || fail "/etc/vswitch left after purge"
echo "test-deb: installed, verified, ran (READY/STOPPING), removed (conffile kept) and purged"
