// Package certs is the certificate store: the certificate directory
// (nginx-proxy's /etc/nginx/certs convention, <name>.crt with <name>.key)
// parsed and checked at the boundary, as a Set the shipped templates read
// (.Certs.For host CERT_NAME, in nginx-proxy's lookup order), kept current
// by Store.Run from file events so that a certificate added or renewed
// re-renders the templates that use it. A pair that does not parse, whose
// key does not match its certificate, or that is expired is reported
// (naming the file and the reason) and left out; the others stay.
package certs
