// Package doctor holds the checks herd up runs at start and herd doctor
// prints: configurations that accept work herd will not finish, and the
// Postgres settings, clock and disk herd depends on.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Level is how bad a check's finding is.
type Level int

const (
	// OK: nothing to do.
	OK Level = iota
	// Warn: herd works, but something it accepts waits or is lost (a
	// webhook stored with no key to apply it, query times herd usage
	// cannot show, a disk that fills before the stream does).
	Warn
	// Fail: something herd is asked to do cannot work.
	Fail
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	}
	return "FAIL"
}

// ParseLevel is the Level whose String is s; anything else is Fail.
func ParseLevel(s string) Level {
	switch s {
	case "ok":
		return OK
	case "warn":
		return Warn
	}
	return Fail
}

// Result is one check's finding: what is wrong and what to do about it.
type Result struct {
	Check   string
	Level   Level
	Message string
	Fix     string // empty when Level is OK
}

func ok(check, format string, args ...any) Result {
	return Result{Check: check, Level: OK, Message: fmt.Sprintf(format, args...)}
}

// Worst is the highest level among rs.
func Worst(rs []Result) Level {
	w := OK
	for _, r := range rs {
		w = max(w, r.Level)
	}
	return w
}

// Write prints rs as a table, each problem followed by its fix.
func Write(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Level, r.Check, r.Message)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", r.Fix)
		}
	}
	return tw.Flush()
}

// Webhooks: a webhook secret makes the collector accept the provider's
// callbacks; without the API key the connector that applies them never
// runs, so they are stored on the stream and wait.
func Webhooks(provider, secretVar string, secretSet bool, keyVar string, keySet bool) Result {
	check := provider + " webhooks"
	switch {
	case secretSet && !keySet:
		return Result{Check: check, Level: Warn,
			Message: fmt.Sprintf("$%s is set but %s is not: %s's webhooks are accepted and stored, and wait unapplied", secretVar, keyVar, provider),
			Fix:     fmt.Sprintf("set %s too (herd up then applies them), or unset $%s", keyVar, secretVar)}
	case secretSet:
		return ok(check, "accepted and applied")
	case keySet:
		return ok(check, "not accepted ($%s unset): changes arrive by polling only", secretVar)
	}
	return ok(check, "not configured")
}

// File checks that the file a flag names exists and can be read.
func File(flagName, path string) Result {
	check := "--" + flagName
	if path == "" {
		return ok(check, "not set")
	}
	f, err := os.Open(path)
	if err != nil {
		msg := fmt.Sprintf("%s cannot be read: %v", path, err)
		if errors.Is(err, fs.ErrNotExist) {
			msg = fmt.Sprintf("%s does not exist", path)
		}
		return Result{Check: check, Level: Fail, Message: msg, Fix: "give the path of an existing file, or leave --" + flagName + " empty"}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return Result{Check: check, Level: Fail, Message: path + " is a directory", Fix: "give the path of the file in it"}
	}
	return ok(check, "%s readable", path)
}

// Writable checks that files can be created in dir by creating and
// removing one. When dir does not exist yet, its nearest existing parent
// is tried, where herd would create it; nothing is left behind.
func Writable(check, dir string) Result {
	fail := func(err error) Result {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("cannot write in %s: %v", dir, err),
			Fix: "make " + dir + " a directory herd's user may write, or point herd at another"}
	}
	at := dir
	for {
		st, err := os.Stat(at)
		if err == nil {
			if !st.IsDir() {
				return fail(fmt.Errorf("%s is not a directory", at))
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(at) == at {
			return fail(err)
		}
		at = filepath.Dir(at)
	}
	f, err := os.CreateTemp(at, ".herd-doctor-*")
	if err != nil {
		return fail(err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fail(err)
	}
	return ok(check, "%s writable", dir)
}

// AdminListener checks that an admin listener reachable beyond this
// machine requires a token. tokenWhere says where herd takes it from ("" for
// none).
func AdminListener(listen, tokenWhere string) Result {
	const check = "admin listener"
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("--admin-listen %q: %v", listen, err), Fix: "give host:port, e.g. 127.0.0.1:8081"}
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return ok(check, "%s: this machine only", listen)
	}
	if tokenWhere == "" {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("%s is reachable beyond this machine and has no token", listen),
			Fix: "set $HERD_ADMIN_TOKEN or --admin-token-file, or listen on 127.0.0.1"}
	}
	return Result{Check: check, Level: Warn,
		Message: fmt.Sprintf("%s is reachable beyond this machine: /metrics and the rest answer 401 without the token (%s)", listen, tokenWhere),
		Fix:     "give Prometheus the token (authorization: credentials_file), or listen on 127.0.0.1"}
}

// FreeDisk checks the free space of the file system holding dir: Fail
// below failBelow bytes, Warn below warnBelow (the stream's size limit:
// with less, the disk fills before the stream does).
func FreeDisk(dir string, warnBelow, failBelow uint64) Result {
	const check = "free disk"
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("statfs %s: %v", dir, err), Fix: "create " + dir + " or give the data directory herd uses"}
	}
	free := st.Bavail * uint64(st.Bsize)
	msg := fmt.Sprintf("%s free in %s", bytes(free), dir)
	switch {
	case free < failBelow:
		return Result{Check: check, Level: Fail, Message: msg + fmt.Sprintf(", below %s", bytes(failBelow)),
			Fix: "free space, or move the data directory (--data-dir) to a larger disk"}
	case free < warnBelow:
		return Result{Check: check, Level: Warn, Message: msg + fmt.Sprintf(", less than the stream may hold (%s)", bytes(warnBelow)),
			Fix: "free space, or lower --stream-max-bytes below the free space"}
	}
	return ok(check, "%s", msg)
}

func bytes(n uint64) string {
	const gib = 1 << 30
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// Querier is a Postgres connection or pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// WALLevel checks that the server of q (a replication source, named by
// what) can publish changes: wal_level logical.
func WALLevel(ctx context.Context, q Querier, what string) Result {
	check := "wal_level " + what
	var level string
	if err := q.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&level); err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("read wal_level: %v", err), Fix: "check that " + what + " is reachable"}
	}
	if level != "logical" {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("wal_level is %q: logical replication from %s stops", level, what),
			Fix: "ALTER SYSTEM SET wal_level = logical; then restart that server (Amazon RDS: rds.logical_replication = 1)"}
	}
	return ok(check, "logical")
}

// Connections checks that the server accepts need more connections (herd's
// pools at their configured size) beside the clients connected now.
func Connections(ctx context.Context, q Querier, need int) Result {
	const check = "max_connections"
	var maxConns, reserved, used int
	err := q.QueryRow(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int`).Scan(&maxConns, &reserved, &used)
	if err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("read max_connections: %v", err), Fix: "check the database URL"}
	}
	room := maxConns - reserved
	msg := fmt.Sprintf("%d connections (max_connections %d less %d reserved), %d in use; herd's pools need up to %d", room, maxConns, reserved, used, need)
	switch {
	case need > room:
		return Result{Check: check, Level: Fail, Message: msg,
			Fix: "raise max_connections (and restart Postgres), or lower pool_max_conns in the database URL"}
	case need+used > room:
		return Result{Check: check, Level: Warn, Message: msg + ": not with the clients connected now",
			Fix: "raise max_connections, lower pool_max_conns, or put PgBouncer before Postgres"}
	}
	return ok(check, "%s", msg)
}

// StatStatements checks that pg_stat_statements is loaded and installed:
// herd usage's query time per role comes from it.
func StatStatements(ctx context.Context, q Querier) Result {
	const check = "pg_stat_statements"
	var libs string
	var installed bool
	err := q.QueryRow(ctx, `SELECT current_setting('shared_preload_libraries'),
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')`).Scan(&libs, &installed)
	if err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("read shared_preload_libraries: %v", err), Fix: "check the database URL"}
	}
	loaded := slices.ContainsFunc(strings.Split(libs, ","), func(s string) bool { return strings.TrimSpace(s) == "pg_stat_statements" })
	switch {
	case !loaded:
		return Result{Check: check, Level: Warn, Message: "not in shared_preload_libraries: herd usage shows no query time per role",
			Fix: "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; restart Postgres; herd usage then installs the extension"}
	case !installed:
		return Result{Check: check, Level: Warn, Message: "loaded but not installed in this database",
			Fix: "CREATE EXTENSION pg_stat_statements; (herd usage does it when it may)"}
	}
	return ok(check, "loaded and installed")
}

// Skew limits of ClockSkew: the collector stamps received_at with this
// machine's clock and Postgres compares with its own (partitions,
// retention, herd status's "last hour").
const (
	SkewWarn = 2 * time.Second
	SkewFail = time.Minute
)

// ClockSkew compares now (this machine's clock) with the server's,
// allowing for the round trip.
func ClockSkew(ctx context.Context, q Querier, now func() time.Time) Result {
	const check = "clock"
	before := now()
	var server time.Time
	if err := q.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&server); err != nil {
		return Result{Check: check, Level: Fail, Message: fmt.Sprintf("read the server's clock: %v", err), Fix: "check the database URL"}
	}
	after := now()
	mid := before.Add(after.Sub(before) / 2)
	skew := server.Sub(mid)
	abs := skew.Abs()
	msg := fmt.Sprintf("Postgres is %s %s this machine (round trip %s)", abs.Round(time.Millisecond), map[bool]string{true: "ahead of", false: "behind"}[skew >= 0], after.Sub(before).Round(time.Millisecond))
	fix := "run NTP (chrony, systemd-timesyncd) on both machines"
	switch {
	case abs > SkewFail:
		return Result{Check: check, Level: Fail, Message: msg, Fix: fix}
	case abs > SkewWarn:
		return Result{Check: check, Level: Warn, Message: msg, Fix: fix}
	}
	return ok(check, "%s", msg)
}
