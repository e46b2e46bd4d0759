// Package pgcluster creates, starts and stops a private PostgreSQL cluster
// from the system's PostgreSQL binaries. herd up uses it when no DATABASE_URL
// is given, and tests use it where they must restart or reconfigure a server.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBinaries means no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (initdb, pg_ctl): install them with 'apt-get install postgresql' (Debian/Ubuntu) or set HERD_PG_BINDIR")

// Cluster is a PostgreSQL data directory and the server that runs on it.
type Cluster struct {
	Dir    string            // data directory
	Port   int               // TCP port on 127.0.0.1
	BinDir string            // directory holding initdb, pg_ctl, postgres
	Config map[string]string // extra settings written to postgresql.auto.conf at Init

	cred *syscall.Credential // set when running as root: the server runs as this user
	uid  int
	gid  int
}

// FindBinDir returns the directory of the newest installed PostgreSQL server
// binaries, honouring HERD_PG_BINDIR.
func FindBinDir() (string, error) {
	if d := os.Getenv("HERD_PG_BINDIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("HERD_PG_BINDIR=%s: %w", d, ErrNoBinaries)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// New describes a cluster in dir. Port 0 picks a free port.
func New(dir string, port int) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: abs, Port: port, BinDir: bin, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root; run it as the postgres user
		// (or nobody) and give that user the data directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				return nil, fmt.Errorf("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.uid, c.gid = uid, gid
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return c, nil
}

// Initialized reports whether the data directory already holds a cluster.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION"))
	return err == nil
}

// Init runs initdb (trust authentication for local connections, UTF8) and
// writes Config.
func (c *Cluster) Init(ctx context.Context) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	if err := c.own(c.Dir); err != nil {
		return err
	}
	out, err := c.run(ctx, "initdb", "-D", c.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb %s: %w: %s", c.Dir, err, out)
	}
	var conf strings.Builder
	conf.WriteString("listen_addresses = '127.0.0.1'\nfsync = on\n")
	keys := make([]string, 0, len(c.Config))
	for k := range c.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(c.Config[k], "'", "''"))
	}
	f := filepath.Join(c.Dir, "postgresql.auto.conf")
	if err := os.WriteFile(f, []byte(conf.String()), 0o600); err != nil {
		return err
	}
	return c.own(f)
}

// own gives path to the user the server runs as, and makes the directories
// above it traversable for that user.
func (c *Cluster) own(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Chown(path, c.uid, c.gid); err != nil {
		return err
	}
	// The data directory itself must stay 0700 (PostgreSQL checks); only the
	// directories above it need to be traversable.
	for d := filepath.Dir(c.Dir); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.Port, c.Dir)
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-o", opts, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
		return fmt.Errorf("start PostgreSQL in %s on port %d: %w: %s %s", c.Dir, c.Port, err, out, tail(log, 800))
	}
	return nil
}

// Stop stops the server. mode is "fast", "smart" or "immediate".
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w: %s", c.Dir, err, out)
	}
	return nil
}

// Running reports whether a server is running on the data directory.
func (c *Cluster) Running(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "status")
	return err == nil
}

// URL returns a connection string for database db on this cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Log returns the tail of the server log, for error messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return tail(b, 2000)
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	cmd.Dir = "/"
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// The server must outlive a cancelled parent context only through pg_ctl's
	// own daemonising; pg_ctl itself returns once the server is up.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
