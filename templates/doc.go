// Package templates holds the templates berth ships, embedded in the
// binary:
//
//   - nginx.tmpl: an nginx-proxy style reverse proxy over the instance
//     records (VIRTUAL_HOST, VIRTUAL_PORT, VIRTUAL_PATH, VIRTUAL_PROTO), a
//     fragment for nginx's http block;
//   - nginx.conf.tmpl: a whole nginx.conf around it, for an nginx berth
//     owns (parse it with nginx.tmpl as an include);
//   - haproxy.cfg.tmpl: a whole haproxy.cfg with live membership: one
//     empty backend per upstream, hosts routed through a map file; the
//     servers and the map are applied by the endpoints/haproxy sink.
//
// nginx.tmpl trusts no record: it checks every value again with the
// registrar's rules (checkHost, checkPath, ...) and writes it with an
// escaping function, so a record written straight into the store cannot
// add a directive or a block; a bad host or instance is left out and
// reported with warn, everyone else renders. It sets
// server_names_hash_bucket_size and server_names_hash_max_size (http
// level) when the names need more than nginx's defaults; an nginx.conf
// that includes the fragment must not set them too.
package templates
