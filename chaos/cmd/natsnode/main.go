// Command natsnode runs one JetStream-enabled NATS server, alone or as a
// member of a cluster, until SIGTERM or SIGINT. The chaos suite starts it as a
// separate process so that it can kill and restart servers like an operator's
// machine would, without depending on a nats-server binary being installed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		name        = flag.String("name", "", "server name (unique within a cluster)")
		host        = flag.String("host", "127.0.0.1", "client listen host")
		port        = flag.Int("port", 4222, "client listen port")
		store       = flag.String("store", "", "JetStream store directory (required)")
		clusterName = flag.String("cluster", "", "cluster name; empty runs a standalone server")
		clusterPort = flag.Int("cluster-port", 0, "route listen port on -host")
		routes      = flag.String("routes", "", "comma-separated nats-route://host:port URLs of the other members")
		maxStore    = flag.Int64("max-store", 1<<30, "JetStream file storage limit in bytes")
	)
	flag.Parse()
	if *store == "" {
		fmt.Fprintln(os.Stderr, "natsnode: -store is required")
		return 2
	}
	opts := &server.Options{
		ServerName:         *name,
		Host:               *host,
		Port:               *port,
		JetStream:          true,
		StoreDir:           *store,
		JetStreamMaxStore:  *maxStore,
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		Logtime:            true,
	}
	if *clusterName != "" {
		opts.Cluster.Name = *clusterName
		opts.Cluster.Host = *host
		opts.Cluster.Port = *clusterPort
		if *routes != "" {
			opts.Routes = server.RoutesFromStr(*routes)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natsnode: configure server %s on port %d: %v\n", *name, *port, err)
		return 1
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		fmt.Fprintf(os.Stderr, "natsnode: server %s not ready on port %d within 30s\n", *name, *port)
		ns.Shutdown()
		return 1
	}
	// Signals are handled here rather than by the server so that SIGTERM is
	// an orderly shutdown and nothing else (reload, lame duck) is implied.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
		ns.Shutdown()
	case <-waitShutdown(ns):
	}
	ns.WaitForShutdown()
	return 0
}

func waitShutdown(ns *server.Server) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		ns.WaitForShutdown()
		close(c)
	}()
	return c
}
