// Package release checks the files haven ships beside its binary, kept in
// deploy/: the Debian package, the systemd unit, the Prometheus alerting
// rules and the Grafana dashboard. It holds tests only.
package release
