#!/usr/bin/env bash
# Run the install steps of docs/systemd.md (its ```sh install blocks, verbatim) as root in a fresh Debian 12
# chroot, then check what a booted system would show: the unit verifies, and the instance's settings compress
# an image dropped into its folder, run as user icsd.
#
#   sudo apt-get install debootstrap
#   sudo debootstrap --variant=minbase bookworm /tmp/deb12 http://deb.debian.org/debian
#   sudo systemd/check-install.sh /tmp/deb12
#
# A chroot runs no systemd: `systemctl enable --now` enables the unit and skips the start, so the last step
# starts what the unit would start (icsd, as user icsd, with the unit's environment and the instance's file),
# as a batch. debootstrap's minbase lacks systemd, which every booted Debian has: it is installed first.
set -euo pipefail
ROOT=$(realpath "${1:?usage: check-install.sh CHROOT}")
HERE=$(cd "$(dirname "$0")/.." && pwd)

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" || true; done; }
trap cleanup EXIT
for m in proc sys dev; do
    mountpoint -q "$ROOT/$m" || { mount --rbind "/$m" "$ROOT/$m"; mounted=("$ROOT/$m" "${mounted[@]}"); }
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# Behind a TLS-inspecting proxy (the host's pip is given its CA in PIP_CERT), the chroot's pip needs the same CA:
# the only thing this check adds to the documented steps.
pip_env=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    cp "$PIP_CERT" "$ROOT/root/host-ca.crt"
    pip_env=(PIP_CERT=/root/host-ca.crt)
fi

echo "== a booted Debian's systemd (not in minbase)"
chroot "$ROOT" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null'

echo "== the checkout, as a user would have it: /root/icsd"
rm -rf "$ROOT/root/icsd" && mkdir -p "$ROOT/root/icsd"
git -C "$HERE" ls-files -z --cached --others --exclude-standard | (cd "$HERE" && xargs -0 tar -cf - --no-recursion) \
    | tar -xf - -C "$ROOT/root/icsd"

# One shell for all blocks, as a reader pasting them one after the other into one root shell. No systemd runs
# in a chroot: there `systemctl daemon-reload` is skipped and `enable --now` only enables (what `systemctl` does
# offline); the checks below then start what the unit would.
prelude='systemctl() { case "$1" in
    daemon-reload) echo "(chroot: no running systemd to reload)";;
    enable) shift; [ "$1" = --now ] && shift; command systemctl enable "$@";;
    *) command systemctl "$@";; esac; }'
script=$(python3 - "$HERE/docs/systemd.md" <<'EOF'
import re, sys
blocks = re.findall(r"^```sh install\n(.*?)^```", open(sys.argv[1]).read(), flags=re.S | re.M)
if len(blocks) < 3:
    sys.exit(f"expected the install blocks in docs/systemd.md, found {len(blocks)}")
for n, block in enumerate(blocks, 1):
    print(f"echo '== docs/systemd.md install block {n}'\n{block}")
EOF
)
chroot "$ROOT" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "${pip_env[@]}" bash -eux -c "$prelude
$script"

echo "== checks"
chroot "$ROOT" bash -euxo pipefail -c '
systemctl is-enabled icsd@photos.service
systemd-analyze verify icsd@photos.service
/opt/icsd/.venv/bin/python -c "import numpy as np; from PIL import Image; x = np.linspace(0, 255, 640, dtype=np.uint8); Image.fromarray(np.dstack([np.tile(x, (480, 1))] * 3)).save(\"/srv/icsd/photos/Uncompressed/ramp.jpg\")"
chown icsd:icsd /srv/icsd/photos/Uncompressed/ramp.jpg
install -d -o icsd -g icsd /var/lib/icsd/photos   # systemd makes StateDirectory= at start
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ICSD_INPUT_DIR=/srv/icsd/photos/Uncompressed ICSD_OUTPUT_DIR=/srv/icsd/photos/Compressed \
    ICSD_STATE_DIR=/var/lib/icsd/photos $(cat /etc/icsd/photos.env) \
    runuser -u icsd -- /opt/icsd/.venv/bin/icsd batch
ls -l /srv/icsd/photos/Compressed/ramp.png
/opt/icsd/.venv/bin/python -c "import icsd.core.quantization.compiled as c; print(\"compiled kernels:\", c.AVAILABLE)" || true
du -sh /opt/icsd/.venv
'
echo "== all install steps ran as written"
