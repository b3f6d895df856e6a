#!/bin/sh
# Runs nginx in the foreground for one instance: its config is written into
# the instance's `run` volume, with the port and the `api` link address that
# vdc passes in the environment.
set -eu
dir="$VDC_VOLUME_RUN"
mkdir -p "$dir/html" "$dir/tmp"
cat > "$dir/html/index.html" <<HTML
<!doctype html>
<title>stack</title>
<p>served by $VDC_INSTANCE</p>
HTML
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log stderr warn;
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream api { server $VDC_LINK_API; keepalive 16; }
    server {
        listen $VDC_HOST:$PORT;
        root $dir/html;
        add_header X-Instance $VDC_INSTANCE always;
        location = /healthz { return 200 "ok\n"; }
        location /api/ {
            proxy_pass http://api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
exec nginx -p "$dir" -c "$dir/nginx.conf"
