// Package nginxlua is the endpoint sink of nginx's Lua balancer: the
// shipped templates/nginx-lua.tmpl renders, in live mode, upstreams whose
// servers are chosen by templates/berth_live.lua from a lua_shared_dict,
// and a push endpoint on a unix socket in a directory only berth (root)
// can enter. Sink writes the Lua module into that directory, pushes each
// endpoint set there (the upstreams that changed, or all of them when
// nginx holds another generation: restarted, or never pushed), and keeps
// the whole set in a file beside the socket that the Lua loads when nginx
// (re)starts, so a restarted nginx serves the current endpoints at once.
//
// Debian's libnginx-mod-http-lua (with lua-resty-core) provides the module;
// CheckModule says which package to install when it is missing.
package nginxlua
