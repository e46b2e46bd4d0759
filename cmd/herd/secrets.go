package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/secrets"
	"github.com/herdhq/herd/stream"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Files herd up keeps its generated credentials in, under --data-dir, each
// mode 0600.
const (
	natsTokenName  = "nats.token" // the embedded NATS server's client token
	adminTokenName = "admin.token"
	pgPassName     = "pgpass" // the private Postgres's password, in pgpass format
)

// natsFlags locate a NATS server and carry the credentials herd presents to
// it. Secrets come from the environment or files: a flag's value is shown to
// every user by ps.
type natsFlags struct {
	url       string
	explicit  bool   // only --nats-url or $HERD_NATS_URL name the server, never the herd up of --data-dir
	tried     string // why the herd up of --data-dir gave no URL (see locate)
	creds     string
	tokenFile string
	token     string
	ca        string
	cert, key string
}

// bind defines the NATS flags. def is nats.DefaultURL for a command that
// needs NATS and "" for one that uses it when given. Neither falls back to
// a server on the default port: a command uses the URL given, else the
// NATS of the herd up running on --data-dir (see locate), else, when it
// needs one, fails saying what it tried.
func (n *natsFlags) bind(fs *flag.FlagSet, def, usage string) {
	if !n.explicit {
		usage += " (default: the NATS of the herd up running on --data-dir, with its token)"
	}
	fs.Var(&natsURLValue{n}, "nats-url", usage)
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials file (.creds: user JWT and nkey seed), for servers that use accounts")
	fs.StringVar(&n.tokenFile, "nats-token-file", "", "file holding the NATS token (herd up keeps its embedded server's in DATA-DIR/"+natsTokenName+")")
	fs.StringVar(&n.token, "nats-token", "", "NATS token; set it by the environment variable, not on the command line where ps shows it")
	fs.StringVar(&n.ca, "nats-ca", "", "PEM file of the CA that signed the NATS servers' certificates (TLS; or use tls:// URLs with the system's CAs)")
	fs.StringVar(&n.cert, "nats-cert", "", "PEM client certificate for NATS mutual TLS, with --nats-key")
	fs.StringVar(&n.key, "nats-key", "", "PEM private key of --nats-cert")
}

// options turns the flags into nats.go options.
func (n *natsFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	given := 0
	for _, s := range []string{n.creds, n.tokenFile, n.token} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return nil, usagef("give one of --nats-creds, --nats-token-file and $HERD_NATS_TOKEN, not several")
	}
	switch {
	case n.creds != "":
		// The seed in it is a secret like a token: same checks.
		if err := secrets.CheckFile(n.creds); err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(n.creds))
	case n.tokenFile != "":
		tok, err := secrets.Read(n.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-token-file: %w", err)
		}
		opts = append(opts, nats.Token(tok))
	case n.token != "":
		opts = append(opts, nats.Token(n.token))
	}
	if n.ca != "" {
		opts = append(opts, nats.RootCAs(n.ca))
	}
	if (n.cert == "") != (n.key == "") {
		return nil, usagef("--nats-cert and --nats-key go together")
	}
	if n.cert != "" {
		opts = append(opts, nats.ClientCert(n.cert, n.key))
	}
	return opts, nil
}

// connect dials NATS for a long-running component (retrying while the
// server is away); refused credentials are an error saying what to set.
func (n *natsFlags) connect(name string) (*nats.Conn, error) {
	if n.url == "" {
		return nil, errors.New(n.triedNATS())
	}
	opts, err := n.options()
	if err != nil {
		return nil, err
	}
	nc, err := stream.Connect(n.url, name, opts...)
	return nc, n.explain(err)
}

// connectOnce dials NATS once, for commands that report and exit.
func (n *natsFlags) connectOnce(name string, timeout time.Duration) (*nats.Conn, error) {
	if n.url == "" {
		return nil, errors.New(n.triedNATS())
	}
	opts, err := n.options()
	if err != nil {
		return nil, err
	}
	opts = append([]nats.Option{nats.Name(name), nats.Timeout(timeout), nats.NoReconnect()}, opts...)
	nc, err := nats.Connect(n.url, opts...)
	if err != nil {
		return nil, n.explain(fmt.Errorf("connect to NATS at %s: %w", secrets.RedactURL(n.url), err))
	}
	return nc, nil
}

// explain adds to a refused connection what the operator must set.
func (n *natsFlags) explain(err error) error {
	if !stream.IsAuthError(err) {
		return err
	}
	if n.creds == "" && n.tokenFile == "" && n.token == "" {
		return fmt.Errorf("%w; this server requires credentials: set $HERD_NATS_TOKEN, --nats-token-file FILE or --nats-creds FILE (herd up --nats-listen keeps its token in DATA-DIR/%s)", err, natsTokenName)
	}
	return fmt.Errorf("%w; the credentials given (--nats-creds, --nats-token-file or $HERD_NATS_TOKEN) are not the server's: check them", err)
}

// adminFlags configure the operators' listener and its bearer token.
type adminFlags struct {
	listen    string
	tokenFile string
	token     string
}

func (f *adminFlags) bind(fs *flag.FlagSet, def string) {
	fs.StringVar(&f.listen, "admin-listen", def, "address of /metrics, /healthz, /readyz and pprof; beyond loopback every path but /healthz and /readyz needs the admin token")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin listener's bearer token (required to listen beyond loopback)")
	fs.StringVar(&f.token, "admin-token", "", "the admin listener's bearer token; set it by the environment variable, not on the command line where ps shows it")
}

// adminHelp is the paragraph of --help that says how the admin listener is
// protected; dataDir says whether the command generates a token.
func adminHelp(generates bool) string {
	s := `The admin listener (--admin-listen) serves /metrics, /healthz, /readyz, pprof and
saved queries. On a loopback address it is open to local users unless a token is
set. On any other address every path but /healthz and /readyz requires
"Authorization: Bearer TOKEN" (401 without), the token coming from
$HERD_ADMIN_TOKEN or --admin-token-file (at least 16 characters); `
	if generates {
		return s + `when neither is set,
herd up generates one into DATA-DIR/` + adminTokenName + ` (mode 0600) and logs where it is.`
	}
	return s + `when neither is set,
the command refuses to start.`
}

// minAdminToken is the shortest admin token accepted.
const minAdminToken = 16

// listenAdmin opens the admin listener and decides its token: the one given,
// else, beyond loopback, one kept under dataDir (herd up) or a refusal.
func (f *adminFlags) listenAdmin(a *admin, dataDir string, log *slog.Logger) (*adminListener, error) {
	token := f.token
	if f.tokenFile != "" {
		if token != "" {
			return nil, usagef("give --admin-token-file or $HERD_ADMIN_TOKEN, not both")
		}
		t, err := secrets.Read(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		token = t
	}
	where := "the one in $HERD_ADMIN_TOKEN"
	if f.tokenFile != "" {
		where = "the one in " + f.tokenFile
	}
	if token != "" && len(token) < minAdminToken {
		return nil, usagef("the admin token is %d characters: use at least %d (e.g. openssl rand -hex 32)", len(token), minAdminToken)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if token == "" && !addr.IP.IsLoopback() {
		if dataDir == "" {
			ln.Close()
			return nil, fmt.Errorf("the admin listener %s is reachable beyond this machine and has no token: set $HERD_ADMIN_TOKEN or --admin-token-file FILE (a secret of at least %d characters), or listen on 127.0.0.1", f.listen, minAdminToken)
		}
		path := filepath.Join(dataDir, adminTokenName)
		t, created, err := secrets.ReadOrCreate(path, 32)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin token: %w", err)
		}
		token, where = t, "the one in "+path
		if created {
			log.Info("generated the admin listener's token", "file", path)
		}
	}
	if token == "" {
		return &adminListener{ln: ln, h: a.mux}, nil
	}
	log.Info("the admin listener requires a bearer token beyond /healthz and /readyz", "addr", addr.String(), "token", where)
	file, _ := strings.CutPrefix(where, "the one in ")
	if strings.HasPrefix(file, "$") {
		file = ""
	}
	return &adminListener{ln: ln, h: requireToken(token, a.refused, a.mux), token: where, tokenFile: file}, nil
}

// requireToken lets /healthz and /readyz through and answers 401 to every
// other request without "Authorization: Bearer token". The comparison is
// of digests in constant time, so that neither the token nor its length
// shows in response times.
func requireToken(token string, refused prometheus.Counter, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			refused.Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="herd admin"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			msg := "this admin listener requires a token: send Authorization: Bearer TOKEN (the token is the one in $HERD_ADMIN_TOKEN or --admin-token-file, or DATA-DIR/" + adminTokenName + " for herd up)"
			if ok {
				msg = "the admin token sent is not this listener's"
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// secretFlags are the flags whose value is a secret, or may hold one (URLs
// with a password). Given on the command line, they are visible to every
// local user through ps; herd still takes them, and warns.
var secretFlags = map[string]string{
	"database-url":   "$DATABASE_URL",
	"from":           "$HERD_FROM",
	"from-warehouse": "$HERD_FROM_WAREHOUSE",
	"nats-url":       "$HERD_NATS_URL",
	"nats-token":     "$HERD_NATS_TOKEN or --nats-token-file",
	"admin-token":    "$HERD_ADMIN_TOKEN or --admin-token-file",
	"api-key":        "$STRIPE_API_KEY",
	"stripe-api-key": "$STRIPE_API_KEY",
	"s3-secret-key":  "$AWS_SECRET_ACCESS_KEY",
	"write-key":      "$HERD_WRITE_KEY",
}

// secretFlagCommand scopes a flag of secretFlags to the commands whose
// name starts with the given one: --from is replicate add's source URL,
// but herd replay's first day.
var secretFlagCommand = map[string]string{
	"from":           "replicate",
	"from-warehouse": "replicate",
}

// warnSecretFlags logs a warning for each secret given on the command line
// (URLs only when they hold a password).
func warnSecretFlags(log *slog.Logger, command string, cmdline map[string]string) {
	for name, v := range cmdline {
		instead, ok := secretFlags[name]
		if !ok || v == "" {
			continue
		}
		if c, scoped := secretFlagCommand[name]; scoped && command != c && !strings.HasPrefix(command, c+" ") {
			continue
		}
		if strings.Contains(v, "://") || strings.Contains(v, "=") {
			if secrets.RedactURL(v) == v {
				continue // a URL without credentials
			}
		}
		log.Warn("a secret was given on the command line, where every local user can read it with ps; set "+instead+" instead", "flag", "--"+name)
	}
}

// redact is secrets.RedactURL, for what herd prints and logs.
func redact(s string) string { return secrets.RedactURL(s) }

// natsHelp is the paragraph of --help on NATS credentials.
const natsHelp = `NATS: --nats-url names the servers. When they require credentials, give a
token by $HERD_NATS_TOKEN or --nats-token-file FILE, or a .creds file by
--nats-creds FILE; a user and password may ride in $HERD_NATS_URL
(nats://user:password@host). For TLS use tls:// URLs, with --nats-ca for a
private CA and --nats-cert/--nats-key for client certificates. Refused
credentials stop the command at once, with an error naming what to set.`
