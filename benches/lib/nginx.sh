# Shared by the load benchmarks (sourced): an nginx mock answering one fixed body.

# nginx_mock_conf DIR PORT CONTENT_TYPE BODY: writes DIR/mock.conf, a one-worker nginx on
# 127.0.0.1:PORT answering POST /v1/chat/completions with BODY (its pid in DIR/mock.pid).
nginx_mock_conf() {
  local dir=$1 port=$2 ctype=$3 body=$4
  mkdir -p "$dir/tmp"
  cat > "$dir/mock.conf" <<CONF
worker_processes 1;
pid $dir/mock.pid;
error_log $dir/mock.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 1000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location /v1/chat/completions { default_type $ctype; return 200 '$body'; }
  }
}
CONF
}
