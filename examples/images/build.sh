#!/usr/bin/env bash
# Builds the example images from this machine's own files (no registry or
# download needed), as an OCI image layout at examples/images/oci:
#
#   python   a Python 3 base: the interpreter, the libraries it links and
#            its standard library, taken from the host (Debian's python3)
#   shop     python + the shop example's programs (a second layer)
#   redis    Debian's redis-server and redis-cli with the libraries they
#            link, run as the user redis, data in /data
#
# Then: vdc up examples/containers.toml
# Or push them to a registry:
#   skopeo copy oci:examples/images/oci:shop docker://REGISTRY/shop:1
#
# Needs umoci, python3 and redis-server (apt-get install umoci python3
# redis-server).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/oci}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v umoci >/dev/null || { echo "umoci is not installed: apt-get install umoci" >&2; exit 1; }
python=/usr/bin/python3
[ -x "$python" ] || { echo "$python is not installed: apt-get install python3" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }
real="$(readlink -f "$python")"
stdlib="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"

# Merged /usr as on the host (/lib -> usr/lib, ...), made in ROOT before
# anything is copied through those paths.
merged_usr() {
    local root="$1" link target
    for link in /lib /lib32 /lib64 /libx32 /bin /sbin; do
        if [ -L "$link" ]; then
            target="$(readlink "$link")"
            mkdir -p "$root/$(dirname "$link")" "$root/${target#/}"
            ln -sfn "$target" "$root$link"
        fi
    done
}

# Copies into ROOT the shared libraries (and the dynamic loader) named in
# the output of ldd read from stdin, with the files their links point to.
copy_libraries() {
    local root="$1" lib path
    awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u | while read -r lib; do
        for path in "$lib" "$(readlink -f "$lib")"; do
            mkdir -p "$root$(dirname "$path")"
            cp -a "$path" "$root$path"
        done
    done
}

rm -rf "$out"
mkdir -p "$(dirname "$out")"
umoci init --layout "$out"

# --- python: the interpreter and what it needs, nothing else of the host.
umoci new --image "$out:python"
umoci unpack --image "$out:python" "$work/python" >/dev/null
root="$work/python/rootfs"
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp" "$root/srv"
merged_usr "$root"
chmod 1777 "$root/tmp"
cp -a "$real" "$root$real"
ln -sf "$(basename "$real")" "$root/usr/bin/python3"
# The shared libraries the interpreter and the standard library's own
# extension modules link, with the dynamic loader.
{
    ldd "$real"
    find "$stdlib/lib-dynload" -name '*.so' -exec ldd {} \; 2>/dev/null
} | copy_libraries "$root"
# The standard library, without its tests and caches.
mkdir -p "$root$stdlib"
tar -C "$stdlib" --exclude=./test --exclude='__pycache__' --exclude=./idlelib \
    --exclude=./tkinter --exclude=./ensurepip -cf - . | tar -C "$root$stdlib" -xf -
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/srv:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
GROUP
chown 1000:1000 "$root/srv"
umoci repack --image "$out:python" "$work/python"
umoci config --image "$out:python" --config.entrypoint /usr/bin/python3 \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.user app --config.workingdir /srv

# --- shop: the example's programs over python.
umoci unpack --image "$out:python" "$work/shop" >/dev/null
mkdir -p "$work/shop/rootfs/srv/shop"
cp "$here/../shop/web.py" "$here/../shop/kvdb.py" "$work/shop/rootfs/srv/shop/"
umoci repack --image "$out:shop" "$work/shop"
umoci config --image "$out:shop" --config.cmd shop/web.py

# --- redis: Debian's server and client, nothing else of the host.
umoci new --image "$out:redis"
umoci unpack --image "$out:redis" "$work/redis" >/dev/null
root="$work/redis/rootfs"
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp" "$root/data"
merged_usr "$root"
chmod 1777 "$root/tmp"
server="$(readlink -f "$(command -v redis-server)")"
cli="$(readlink -f "$(command -v redis-cli)")"
cp -a "$server" "$root/usr/bin/redis-server"
cp -a "$cli" "$root/usr/bin/redis-cli"
ldd "$server" "$cli" | copy_libraries "$root"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
redis:x:999:999:redis:/data:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
redis:x:999:
GROUP
chown 999:999 "$root/data"
umoci repack --image "$out:redis" "$work/redis"
# As Docker's redis image: the server on 6379 of every address, data in
# /data; a component gives its own port with args = ["--port", "${PORT}", …].
umoci config --image "$out:redis" --config.entrypoint /usr/bin/redis-server \
    --config.cmd --bind --config.cmd 0.0.0.0 --config.cmd --protected-mode --config.cmd no \
    --config.cmd --dir --config.cmd /data \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.user redis \
    --config.workingdir /data --config.exposedports 6379/tcp --config.volume /data

umoci ls --layout "$out"
du -sh "$out"
