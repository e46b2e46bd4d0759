package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/jackc/pgx/v5"
)

// hba is the pg_hba.conf of a cluster with a password: every connection,
// socket or loopback TCP, authenticates with scram-sha-256.
const hba = `# Written by herd: every connection needs the superuser's password, kept in
# the pgpass file next to this data directory (herd up: DATA-DIR/pgpass).
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
`

// password returns the superuser's password from PassFile, generating the
// file (pgpass format, mode 0600) when create is set and it is missing.
func (c *Cluster) password(create bool) (string, error) {
	line, err := secrets.Read(c.PassFile)
	if err == nil {
		// host:port:database:user:password; the password is hex, so it
		// needs no unescaping.
		f := strings.Split(line, ":")
		if len(f) != 5 || f[4] == "" {
			return "", fmt.Errorf("%s is not a pgpass line (host:port:database:user:password): delete it only if you also reset the cluster's password", c.PassFile)
		}
		return f[4], nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return "", err
	}
	pw := secrets.Generate(24)
	if err := os.MkdirAll(filepath.Dir(c.PassFile), 0o700); err != nil {
		return "", err
	}
	content := fmt.Sprintf("127.0.0.1:*:*:postgres:%s\nlocalhost:*:*:postgres:%s\n", pw, pw)
	if err := secrets.WriteFile(c.PassFile, content); err != nil {
		return "", err
	}
	return pw, nil
}

// tempSecret writes s to a new file beside the data directory, readable by
// the user the server runs as.
func (c *Cluster) tempSecret(s string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(c.Dir), ".herd-initdb-pw-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = f.WriteString(s + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && c.cred != nil {
		err = os.Chown(name, c.uid, c.gid)
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func (c *Cluster) writeHBA() error {
	p := filepath.Join(c.Dir, "pg_hba.conf")
	if err := os.WriteFile(p, []byte(hba), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return c.own(p)
}

// Trusting reports whether pg_hba.conf lets some connection in without a
// password (a cluster made by initdb --auth=trust, as herd up did before it
// had passwords).
func (c *Cluster) Trusting() (bool, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "pg_hba.conf"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, f := range strings.Fields(line) {
			if f == "trust" {
				return true, nil
			}
		}
	}
	return false, nil
}

// Secure makes sure the cluster requires PassFile's password. A cluster
// made with trust authentication is switched over as Start does it: stopped
// when running, started without TCP, given its password, restarted. A
// cluster that already requires the password is left as it is; then a
// missing PassFile is an error that says how to recover.
func (c *Cluster) Secure(ctx context.Context) error {
	if c.PassFile == "" {
		return errors.New("pgcluster: Secure needs PassFile")
	}
	trusting, err := c.Trusting()
	if err != nil {
		return err
	}
	if !trusting {
		if _, err := c.password(false); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("the Postgres cluster in %s requires a password and its password file %s is missing: restore the file, or reset the password: stop herd, replace scram-sha-256 by trust in %s, and start herd again (it sets a new one)",
					c.Dir, c.PassFile, filepath.Join(c.Dir, "pg_hba.conf"))
			}
			return err
		}
		return nil
	}
	if c.Running(ctx) {
		if err := c.Stop(ctx, "fast"); err != nil {
			return err
		}
	}
	return c.Start(ctx)
}

// beforePassword, when set (by tests), runs while secureOffline's server is
// up and the cluster still trusts, just before the password is set.
var beforePassword func(*Cluster)

// secureOffline gives a stopped cluster that trusts its password: it starts
// the server with no TCP listener (listen_addresses=”), its socket only in
// the 0700 data directory, sets the password over that socket, writes the
// scram-sha-256 pg_hba.conf and stops the server. While it trusts, no other
// local user can reach it: the old way (start on TCP, then set the
// password) let anyone polling the port in as superuser.
func (c *Cluster) secureOffline(ctx context.Context) error {
	if c.Running(ctx) {
		return fmt.Errorf("the Postgres cluster in %s trusts every connection and is running: stop it (pg_ctl -D %s stop) so that herd can set its password without TCP", c.Dir, c.Dir)
	}
	pw, err := c.password(true)
	if err != nil {
		return err
	}
	if err := c.start(ctx, "-c listen_addresses='' -c unix_socket_permissions=0700"); err != nil {
		return fmt.Errorf("start without TCP to set a password: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop(context.WithoutCancel(ctx), "fast")
		}
	}()
	cfg, err := pgx.ParseConfig("user=postgres dbname=postgres sslmode=disable")
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port = c.Dir, uint16(c.Port)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to the Postgres cluster in %s over its socket to set its password: %w", c.Dir, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if beforePassword != nil {
		beforePassword(c)
	}
	c.warnRoles(ctx, conn)
	// The server gets the SCRAM verifier, never the password itself, so
	// that it cannot end up in the server's log.
	v, err := secrets.ScramVerifier(pw)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE postgres PASSWORD '"+strings.ReplaceAll(v, "'", "''")+"'"); err != nil {
		return fmt.Errorf("set the superuser's password in %s: %w", c.Dir, err)
	}
	if err := c.writeHBA(); err != nil {
		return err
	}
	conn.Close(ctx)
	stopped = true
	return c.Stop(ctx, "fast")
}

// warnRoles logs every role but postgres that may log in or is superuser:
// while the cluster trusted every local user, anyone could have made one
// (herd itself makes only analysts, LOGIN NOSUPERUSER, with herd analysts
// add).
func (c *Cluster) warnRoles(ctx context.Context, conn *pgx.Conn) {
	if c.Logger == nil {
		return
	}
	rows, err := conn.Query(ctx, `SELECT rolname, rolsuper FROM pg_roles
		WHERE (rolcanlogin OR rolsuper) AND rolname <> 'postgres' AND rolname NOT LIKE 'pg\_%' ORDER BY rolname`)
	if err != nil {
		c.Logger.Warn("could not list the roles of the private Postgres", "dir", c.Dir, "err", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var super bool
		if err := rows.Scan(&name, &super); err != nil {
			return
		}
		msg := "a role that can log in exists in the private Postgres, which trusted every local user until now: if it is not an analyst you added (herd analysts list), someone else may have made it; drop it (DROP ROLE)"
		if super {
			msg = "a SUPERUSER role exists in the private Postgres, which trusted every local user until now; herd makes none but postgres: someone else may have made it, drop it (DROP ROLE) and check the database for their changes"
		}
		c.Logger.Warn(msg, "role", name, "superuser", super, "dir", c.Dir)
	}
}

// escapePath percent-encodes a file path for a URL's query, keeping '/'.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		if ch == '/' || ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
			(ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}
