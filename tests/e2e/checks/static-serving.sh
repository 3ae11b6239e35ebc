# shellcheck shell=bash
# A static site through the server's HAProxy is served as a CDN would:
# gzipped for a client that asks (HAProxy passes Accept-Encoding on and the
# answer back), the same bytes once decompressed, ranges, a 304 for its
# ETag, Cache-Control by type; a www. name is one 301 away. Sourced by
# tests/e2e/run.sh.

CHECKS+=(t_static_site_is_compressed_and_cacheable_through_haproxy)

CDN_SITE=cdn.example.com

t_static_site_is_compressed_and_cacheable_through_haproxy() {
  local content=$IMPORT_DIR/$CDN_SITE/static/www-content page headers etag
  page=$(mktemp)
  for _ in $(seq 2000); do
    printf '<p>hosting static sites for their owners, line after line</p>\n'
  done >"$page"
  bx mkdir -p "$content/css"
  bxi sh -c "cat >$content/index.html" <"$page"
  printf 'body { color: #333; }\n' | bxi sh -c "cat >$content/css/style.css"
  bx systemctl start "static@$CDN_SITE"
  expect "/" "$(code "$CDN_SITE" /)" 200
  headers=$(curl -s --max-time "$CURL_SECS" -H "Host: $CDN_SITE" -H 'Accept-Encoding: gzip' \
    -D - -o "$page.gz" "http://127.0.0.1:$PORT/" | tr -d '\r')
  expect "Content-Encoding" "$(sed -n 's/^[Cc]ontent-[Ee]ncoding: //p' <<<"$headers")" gzip
  expect "Cache-Control of the page" "$(sed -n 's/^[Cc]ache-[Cc]ontrol: //p' <<<"$headers")" no-cache
  expect "decompressed page" "$(gzip -dc "$page.gz" | cmp -s - "$page" && echo same)" same
  printf '    (%s bytes, %s gzipped)\n' "$(wc -c <"$page")" "$(wc -c <"$page.gz")" >&2
  expect "Range" "$(curl -s --max-time "$CURL_SECS" -H "Host: $CDN_SITE" -r 3-12 \
    "http://127.0.0.1:$PORT/")" "$(cut -c4-13 <"$page" | head -1)"
  etag=$(curl -s --max-time "$CURL_SECS" -H "Host: $CDN_SITE" -D - -o /dev/null \
    "http://127.0.0.1:$PORT/" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
  expect "If-None-Match" "$(curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_SECS" \
    -H "Host: $CDN_SITE" -H "If-None-Match: $etag" "http://127.0.0.1:$PORT/")" 304
  expect "Cache-Control of a style sheet" "$(curl -s --max-time "$CURL_SECS" -H "Host: $CDN_SITE" \
    -D - -o /dev/null "http://127.0.0.1:$PORT/css/style.css" | tr -d '\r' |
    sed -n 's/^[Cc]ache-[Cc]ontrol: //p')" "public, max-age=3600"
  expect "www. (one 301 to the name)" "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' \
    --max-time "$CURL_SECS" -H "Host: www.$CDN_SITE" "http://127.0.0.1:$PORT/a?b=1")" \
    "301 http://$CDN_SITE/a?b=1"
  rm -f "$page" "$page.gz"
}
