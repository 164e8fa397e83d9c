// Package templates holds the templates berth ships, embedded in the
// binary:
//
//   - nginx.tmpl: an nginx-proxy style reverse proxy over the instance
//     records (VIRTUAL_HOST, VIRTUAL_PORT, VIRTUAL_PATH, VIRTUAL_PROTO), a
//     fragment for nginx's http block;
//   - nginx.conf.tmpl: a whole nginx.conf around it, for an nginx berth
//     owns (parse it with nginx.tmpl as an include).
package templates
