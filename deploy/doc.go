// Package deploy holds herd's deployment files (systemd units, a
// docker-compose file, Kubernetes manifests, the NATS cluster
// configuration, a Grafana dashboard and Prometheus alerting rules) and the
// tests that keep them parseable and in step with herd's command line,
// nats-server's configuration format and the metrics herd exports.
package deploy
