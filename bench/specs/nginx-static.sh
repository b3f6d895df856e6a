#!/bin/sh
# One nginx worker in the foreground serving a small static file with
# keep-alive, on the port vdc gives the instance. Its config and files live
# in the instance's `run` volume.
set -eu
dir="$VDC_VOLUME_RUN"
mkdir -p "$dir/html" "$dir/tmp"
# A 128-byte body, and a 64 KiB one (/big).
printf '%0127d\n' 0 | tr 0 x >"$dir/html/index.html"
head -c 65536 /dev/zero | tr '\0' y >"$dir/html/big"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log stderr warn;
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    open_file_cache max=16;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen $VDC_HOST:$PORT;
        root $dir/html;
        location = /healthz { return 200 "ok\n"; }
    }
}
CONF
exec nginx -p "$dir" -c "$dir/nginx.conf"
