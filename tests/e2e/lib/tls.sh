# shellcheck shell=bash
# TLS test material shared by tests/e2e/run.sh's checks and
# tests/e2e/fleet.sh: a CA of the test's own and a site's bundle in the
# layout hostyard imports (certificate, chain, key in one PEM file).

# make_tls_bundle DIR DOMAIN: DIR/ca.pem and DIR/bundle.pem (the site's
# certificate for DOMAIN and www.DOMAIN, the CA, the key), with openssl.
make_tls_bundle() {
  local dir=$1 domain=$2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=hostyard e2e CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$domain" -keyout "$dir/site.key" -out "$dir/site.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:www.%s\n' "$domain" "$domain" >"$dir/ext"
  openssl x509 -req -in "$dir/site.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/ext" -out "$dir/site.pem" 2>/dev/null
  cat "$dir/site.pem" "$dir/ca.pem" "$dir/site.key" >"$dir/bundle.pem"
}
