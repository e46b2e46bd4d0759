// Package deploy holds herd's deployment files (systemd units, a
// docker-compose file, Kubernetes manifests and the NATS cluster
// configuration) and the test that keeps them parseable and in step with
// herd's command line and nats-server's configuration format.
package deploy
