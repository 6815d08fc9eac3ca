#!/bin/sh
# Prints the path of a headless-capable Chromium for the browser tests, installing Debian's chromium into
# .tools/chromium first if none is there. Needs no root: the packages apt would install (chromium and the
# libraries this machine lacks) are fetched with `apt-get download` and unpacked with `dpkg -x`; a small
# wrapper runs the binary with their libraries on LD_LIBRARY_PATH. Nothing outside .tools/ changes.
#
# Order: $AUDIT_CHROMIUM if executable, a system chromium on PATH, .tools/chromium/chromium, else install.
# Exit 1 with the reason on stderr when no browser can be had (the tests then skip, saying why).
set -eu
case $0 in */*) CDPATH='' cd -- "${0%/*}/.." ;; *) cd .. ;; esac
ROOT=$(pwd)
DEST="$ROOT/.tools/chromium"
WRAPPER="$DEST/chromium"

if [ -n "${AUDIT_CHROMIUM:-}" ] && [ -x "$AUDIT_CHROMIUM" ]; then echo "$AUDIT_CHROMIUM"; exit 0; fi
for name in chromium chromium-browser; do
    if found=$(command -v "$name" 2>/dev/null); then echo "$found"; exit 0; fi
done
if [ -x "$WRAPPER" ] && "$WRAPPER" --version >/dev/null 2>&1; then echo "$WRAPPER"; exit 0; fi

fail() { echo "scripts/chromium.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || fail "no apt-get here: install Chromium and set AUDIT_CHROMIUM to its path"
command -v dpkg >/dev/null 2>&1 || fail "no dpkg here: install Chromium and set AUDIT_CHROMIUM to its path"

# What apt would install for chromium on this machine (a simulation: no root, nothing changes).
plan() { apt-get -s -qq install --no-install-recommends chromium 2>/dev/null | awk '/^Inst /{print $2}'; }
packages=$(plan || true)
if [ -z "$packages" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 || true  # a fresh machine may have no package lists yet
    packages=$(plan || true)
fi
[ -n "$packages" ] || fail "apt knows no installable chromium package (run 'apt-get update' as root, or set AUDIT_CHROMIUM)"

work=$(mktemp -d)
chmod 755 "$work"  # apt's download user (_apt) writes there when run as root
trap 'rm -rf "$work"' EXIT
echo "scripts/chromium.sh: fetching $(echo "$packages" | wc -l) Debian packages into $DEST" >&2
# shellcheck disable=SC2086
(cd "$work" && apt-get download -qq $packages >&2) || fail "apt-get download failed"
rm -rf "$DEST.new"
mkdir -p "$DEST.new/root"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$DEST.new/root"; done
[ -x "$DEST.new/root/usr/lib/chromium/chromium" ] || fail "the chromium package held no usr/lib/chromium/chromium"
cat >"$DEST.new/chromium" <<EOF
#!/bin/sh
# Debian's chromium unpacked by scripts/chromium.sh, with its unpacked libraries.
HERE="$DEST/root"
LIBS="\$HERE/usr/lib/x86_64-linux-gnu:\$HERE/usr/lib/aarch64-linux-gnu"
export LD_LIBRARY_PATH="\$LIBS:\$HERE/usr/lib/x86_64-linux-gnu/pulseaudio:\$HERE/usr/lib/aarch64-linux-gnu/pulseaudio:\$HERE/usr/lib/chromium\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$HERE/usr/lib/chromium/chromium" "\$@"
EOF
chmod +x "$DEST.new/chromium"
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
"$WRAPPER" --version >/dev/null 2>&1 || fail "the unpacked chromium does not start: $("$WRAPPER" --version 2>&1 | tail -3)"
echo "$WRAPPER"
