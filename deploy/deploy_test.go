package deploy

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// herdHelp returns `herd help CMD` of a herd built from this checkout, so
// that the flags and HERD_* variables the deploy files use are checked
// against the real command line.
var (
	helpOnce sync.Once
	helpBin  string
	helpErr  error
	helpMu   sync.Mutex
	helpOut  = map[string]string{}
)

func herdHelp(t *testing.T, cmd string) string {
	t.Helper()
	helpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herd-deploy-test-")
		if err != nil {
			helpErr = err
			return
		}
		helpBin = filepath.Join(dir, "herd")
		if out, err := exec.Command("go", "build", "-o", helpBin, "github.com/herdhq/herd/cmd/herd").CombinedOutput(); err != nil {
			helpErr = fmt.Errorf("build herd: %w: %s", err, out)
		}
	})
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	helpMu.Lock()
	defer helpMu.Unlock()
	if out, ok := helpOut[cmd]; ok {
		return out
	}
	out, err := exec.Command(helpBin, "help", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("herd help %s: %v: %s", cmd, err, out)
	}
	helpOut[cmd] = string(out)
	return string(out)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if helpBin != "" {
		os.RemoveAll(filepath.Dir(helpBin))
	}
	os.Exit(code)
}

// checkInvocation fails unless every --flag in args is a flag of herd CMD
// and every HERD_* name in env is read by CMD or, for an environment block
// shared by several commands, by one of also.
func checkInvocation(t *testing.T, where string, args []string, env []string, also ...string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no herd command", where)
		return
	}
	cmd := args[0]
	help := herdHelp(t, cmd)
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.Contains(help, "--"+name+"\t") {
			t.Errorf("%s: herd %s has no flag --%s", where, cmd, name)
		}
	}
	for _, e := range env {
		if !strings.HasPrefix(e, "HERD_") {
			continue
		}
		read := false
		for _, c := range append([]string{cmd}, also...) {
			read = read || strings.Contains(herdHelp(t, c), "[$"+e+"]")
		}
		if !read {
			t.Errorf("%s: no herd command here reads %s (herd %s, %v)", where, e, cmd, also)
		}
	}
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads the subset of systemd's unit syntax that herd's units use
// and refuses what systemd would reject or silently ignore: keys outside a
// section, lines without '=', unknown sections.
func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	var section string
	sc := bufio.NewScanner(r)
	line := 0
	var cont strings.Builder
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if cont.Len() > 0 {
			text = cont.String() + text
			cont.Reset()
		}
		if strings.HasSuffix(text, "\\") {
			cont.WriteString(strings.TrimSpace(strings.TrimSuffix(text, "\\")) + " ")
			continue
		}
		switch {
		case text == "" || text[0] == '#' || text[0] == ';':
		case text[0] == '[':
			if !strings.HasSuffix(text, "]") {
				return nil, fmt.Errorf("line %d: malformed section header %q", line, text)
			}
			section = text[1 : len(text)-1]
			if !slices.Contains([]string{"Unit", "Service", "Install"}, section) {
				return nil, fmt.Errorf("line %d: unknown section [%s]", line, section)
			}
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(text, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: want Key=Value, got %q", line, text)
			}
			if section == "" {
				return nil, fmt.Errorf("line %d: %q outside a section", line, text)
			}
			k = strings.TrimSpace(k)
			if !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`).MatchString(k) {
				return nil, fmt.Errorf("line %d: bad key %q", line, k)
			}
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if cont.Len() > 0 {
		return nil, errors.New("file ends in a line continuation")
	}
	return u, sc.Err()
}

func TestParseUnit(t *testing.T) {
	for _, bad := range []string{
		"Description=x\n",                   // outside a section
		"[Unit]\nDescription\n",             // no '='
		"[Sevice]\nExecStart=/bin/true\n",   // misspelt section
		"[Service]\nExecStart=/bin/true \\", // dangling continuation
	} {
		if _, err := parseUnit(strings.NewReader(bad)); err == nil {
			t.Errorf("parseUnit accepted %q", bad)
		}
	}
	u, err := parseUnit(strings.NewReader("[Service]\nEnvironment=A=1\nEnvironment=B=2\nExecStart=/bin/herd \\\n  write\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u["Service"]["Environment"]; len(got) != 2 || got[1] != "B=2" {
		t.Errorf("Environment = %q", got)
	}
	if got := u["Service"]["ExecStart"]; len(got) != 1 || got[0] != "/bin/herd write" {
		t.Errorf("ExecStart = %q", got)
	}
}

func TestSystemdUnits(t *testing.T) {
	for _, tc := range []struct {
		file, cmd string
		wantEnv   []string
	}{
		{"herd-collect.service", "collect", []string{"HERD_NATS_URL", "HERD_NATS_CA", "HERD_STREAM_REPLICAS"}},
		{"herd-write.service", "write", []string{"HERD_NATS_URL", "HERD_NATS_CA", "HERD_STREAM_REPLICAS", "DATABASE_URL"}},
		{"herd-up.service", "up", []string{"HERD_DATA_DIR"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("systemd", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			u, err := parseUnit(f)
			if err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			svc := u["Service"]
			for k, want := range map[string]string{"Restart": "always", "KillSignal": "SIGTERM", "NoNewPrivileges": "yes", "ProtectSystem": "strict"} {
				if got := last(svc[k]); got != want {
					t.Errorf("%s: %s=%q, want %q", tc.file, k, got, want)
				}
			}
			for _, k := range []string{"TimeoutStopSec", "User", "ExecStart"} {
				if last(svc[k]) == "" {
					t.Errorf("%s: no %s", tc.file, k)
				}
			}
			if last(u["Install"]["WantedBy"]) != "multi-user.target" {
				t.Errorf("%s: WantedBy=%q", tc.file, last(u["Install"]["WantedBy"]))
			}
			exec := strings.Fields(last(svc["ExecStart"]))
			if len(exec) < 2 || filepath.Base(exec[0]) != "herd" || exec[1] != tc.cmd {
				t.Fatalf("%s: ExecStart=%q, want herd %s", tc.file, last(svc["ExecStart"]), tc.cmd)
			}
			var env []string
			for _, e := range svc["Environment"] {
				k, v, _ := strings.Cut(e, "=")
				env = append(env, k)
				if k == "HERD_NATS_URL" {
					checkTLSURLs(t, tc.file, v)
				}
				if slices.Contains([]string{"HERD_NATS_TOKEN", "HERD_ADMIN_TOKEN", "DATABASE_URL"}, k) && strings.Contains(v, ":") && strings.Contains(v, "@") && !strings.Contains(v, "//herd@") {
					t.Errorf("%s: %s holds a credential; it belongs in the EnvironmentFile", tc.file, k)
				}
			}
			for _, w := range tc.wantEnv {
				if !slices.Contains(env, w) {
					t.Errorf("%s: no Environment=%s", tc.file, w)
				}
			}
			checkInvocation(t, tc.file, exec[1:], env)
		})
	}
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return docs
}

func TestDockerCompose(t *testing.T) {
	doc := yamlDocs(t, "docker-compose.yml")[0]
	services, _ := doc["services"].(map[string]any)
	want := []string{"postgres", "nats-1", "nats-2", "nats-3", "migrate", "collect-1", "collect-2", "collect-3", "write-1", "write-2"}
	for _, name := range want {
		if services[name] == nil {
			t.Errorf("docker-compose.yml: no service %s", name)
		}
	}
	for name, v := range services {
		s := v.(map[string]any)
		command := strs(s["command"])
		env := keys(s["environment"])
		switch {
		case strings.HasPrefix(name, "nats-"):
			// The config file the node mounts must be one of deploy/nats.
			var conf string
			for _, vol := range strs(s["volumes"]) {
				if strings.HasSuffix(vol, ":/etc/nats/nats.conf:ro") {
					conf = strings.TrimSuffix(vol, ":/etc/nats/nats.conf:ro")
				}
			}
			if conf != "./nats/"+name+".conf" {
				t.Errorf("docker-compose.yml: %s mounts %q, want ./nats/%s.conf", name, conf, name)
			}
			// The config reads the token and the TLS files from here.
			if !slices.Contains(env, "HERD_NATS_TOKEN") {
				t.Errorf("docker-compose.yml: %s does not get HERD_NATS_TOKEN", name)
			}
			if !slices.Contains(strs(s["volumes"]), "./nats/tls:/etc/nats/tls:ro") {
				t.Errorf("docker-compose.yml: %s does not mount ./nats/tls", name)
			}
		case strings.HasPrefix(name, "collect-"), strings.HasPrefix(name, "write-"), name == "migrate":
			if s["image"] != "herd:local" {
				t.Errorf("docker-compose.yml: %s image %v, want herd:local", name, s["image"])
			}
			build, _ := s["build"].(map[string]any)
			if build == nil || build["dockerfile"] != "deploy/Dockerfile" {
				t.Errorf("docker-compose.yml: %s is not built from deploy/Dockerfile", name)
			}
			// The x-herd environment block is shared by every herd service.
			checkInvocation(t, "docker-compose.yml "+name, command, env, "collect", "write")
			if name != "migrate" && !slices.Contains(env, "HERD_NATS_URL") {
				t.Errorf("docker-compose.yml: %s has no HERD_NATS_URL", name)
			}
			envMap, _ := s["environment"].(map[string]any)
			if name != "migrate" {
				checkTLSURLs(t, "docker-compose.yml "+name, fmt.Sprint(envMap["HERD_NATS_URL"]))
				checkCredentials(t, "docker-compose.yml "+name, command, env)
			}
			// Secrets are interpolated from the operator's environment, never
			// written here.
			for _, k := range []string{"HERD_NATS_TOKEN", "HERD_ADMIN_TOKEN"} {
				if v, ok := envMap[k].(string); ok && !strings.HasPrefix(v, "${") {
					t.Errorf("docker-compose.yml: %s sets %s to a literal; use ${%s:?...}", name, k, k)
				}
			}
			if v, _ := envMap["DATABASE_URL"].(string); strings.Contains(v, ":herd@") {
				t.Errorf("docker-compose.yml: %s DATABASE_URL holds a literal password", name)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	known := []string{"FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL"}
	var instrs []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word := strings.Fields(line)[0]
		if !slices.Contains(known, word) {
			t.Errorf("Dockerfile line %d: unknown instruction %q", i+1, word)
		}
		instrs = append(instrs, line)
	}
	if len(instrs) == 0 || !strings.HasPrefix(instrs[0], "FROM ") {
		t.Fatalf("Dockerfile must start with FROM")
	}
	if !slices.ContainsFunc(instrs, func(s string) bool { return strings.Contains(s, "go build") && strings.Contains(s, "./cmd/herd") }) {
		t.Error("Dockerfile does not build ./cmd/herd")
	}
	if !slices.ContainsFunc(instrs, func(s string) bool { return strings.HasPrefix(s, "ENTRYPOINT") && strings.Contains(s, "herd") }) {
		t.Error("Dockerfile has no herd ENTRYPOINT")
	}
}

func TestKubernetes(t *testing.T) {
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no k8s manifests: %v", err)
	}
	kinds := map[string]bool{}
	var natsConf string
	for _, f := range files {
		for i, d := range yamlDocs(t, f) {
			kind, _ := d["kind"].(string)
			meta, _ := d["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			if d["apiVersion"] == nil || kind == "" || name == "" {
				t.Errorf("%s document %d: want apiVersion, kind and metadata.name", f, i+1)
				continue
			}
			if kind != "Namespace" && meta["namespace"] != "herd" {
				t.Errorf("%s %s/%s: namespace %v, want herd", f, kind, name, meta["namespace"])
			}
			kinds[kind+"/"+name] = true
			if kind == "ConfigMap" && name == "nats-config" {
				natsConf, _ = dig(d, "data", "nats.conf").(string)
			}
			if kind == "NetworkPolicy" && name == "nats" {
				checkNATSPolicy(t, f, d)
			}
			if kind == "StatefulSet" && name == "nats" {
				for _, c := range containers(d) {
					if !slices.Contains(secretEnv(t, f, c.(map[string]any)), "HERD_NATS_TOKEN") {
						t.Errorf("%s: the NATS container does not get HERD_NATS_TOKEN from a Secret", f)
					}
				}
			}
			for _, c := range containers(d) {
				cm := c.(map[string]any)
				if image, _ := cm["image"].(string); image != "herd:local" {
					continue
				}
				var env []string
				envFrom, _ := cm["envFrom"].([]any)
				for _, ef := range envFrom {
					if ref, _ := dig(ef, "configMapRef", "name").(string); ref != "" {
						env = append(env, configMapKeys(t, files, ref)...)
						if u, _ := configMapValue(t, files, ref, "HERD_NATS_URL"); u != "" {
							checkTLSURLs(t, f+" ConfigMap "+ref, u)
						}
					}
				}
				env = append(env, secretEnv(t, f, cm)...)
				where := fmt.Sprintf("%s %s/%s", f, kind, name)
				// herd-config is shared by collectors and writers.
				checkInvocation(t, where, strs(cm["args"]), env, "collect", "write")
				if args := strs(cm["args"]); len(args) > 0 && args[0] != "migrate" {
					checkCredentials(t, where, args, env)
				}
			}
		}
	}
	for _, want := range []string{"Deployment/herd-collect", "Deployment/herd-write", "StatefulSet/nats", "Service/nats", "Service/herd-collect", "ConfigMap/herd-config", "ConfigMap/nats-config", "Job/herd-migrate", "NetworkPolicy/nats"} {
		if !kinds[want] {
			t.Errorf("k8s: no %s", want)
		}
	}
	if natsConf == "" {
		t.Fatal("k8s: ConfigMap nats-config has no nats.conf")
	}
	// The StatefulSet's config must be a valid 3-node cluster too.
	t.Setenv("POD_NAME", "nats-0")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(natsConf), 0o644); err != nil {
		t.Fatal(err)
	}
	checkNATSConfig(t, path, "nats-0")
}

// configMapKeys returns the data keys of the named ConfigMap.
func configMapKeys(t *testing.T, files []string, name string) []string {
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			if d["kind"] == "ConfigMap" && dig(d, "metadata", "name") == name {
				return keys(d["data"])
			}
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

func containers(d map[string]any) []any {
	c, _ := dig(d, "spec", "template", "spec", "containers").([]any)
	return c
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// natsTLS writes a CA and a server certificate (for clients and routes)
// into a temporary directory, as deploy/nats/make-tls.sh does, and returns
// the directory.
func natsTLS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herd NATS CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "herd NATS server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"nats-1", "nats-2", "nats-3", "localhost"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	for name, block := range map[string]*pem.Block{
		"ca.crt":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.crt": {Type: "CERTIFICATE", Bytes: srvDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkNATSConfig loads path with nats-server's own configuration parser,
// the one `nats-server -c` uses, and checks the cluster shape herd relies on
// and that nothing listens without credentials: clients need the token of
// $HERD_NATS_TOKEN over TLS, routes certificates of the CA. The TLS files
// are generated and the config's /etc/nats/tls pointed at them. It returns
// the options and the path of the config as checked.
func checkNATSConfig(t *testing.T, path, name string) (*server.Options, string) {
	t.Helper()
	// The token as the docs say to make it, from a random part that starts
	// with digits: nats-server substitutes $HERD_NATS_TOKEN as a value of
	// its own, and reads a bare 12e4... as a number or refuses it.
	token := documentedNATSToken(t)
	t.Setenv("HERD_NATS_TOKEN", token)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	if !strings.Contains(conf, "/etc/nats/tls/") {
		t.Errorf("%s: no TLS files under /etc/nats/tls", path)
	}
	checked := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(checked, []byte(strings.ReplaceAll(conf, "/etc/nats/tls", natsTLS(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(checked)
	if err != nil {
		t.Fatalf("%s: nats-server refuses it: %v", path, err)
	}
	if opts.ServerName != name {
		t.Errorf("%s: server_name %q, want %q", path, opts.ServerName, name)
	}
	if !opts.JetStream || opts.StoreDir == "" {
		t.Errorf("%s: JetStream not enabled with a store_dir", path)
	}
	if opts.Cluster.Name != "herd" || opts.Cluster.Port != 6222 {
		t.Errorf("%s: cluster %q on port %d, want herd on 6222", path, opts.Cluster.Name, opts.Cluster.Port)
	}
	if len(opts.Routes) < 2 {
		t.Errorf("%s: %d routes, want the other two members", path, len(opts.Routes))
	}
	// herd's default --stream-max-bytes is 10 GiB: each node must hold a
	// full replica of it.
	if opts.JetStreamMaxStore < 10<<30 {
		t.Errorf("%s: max_file_store %d is below herd's default stream limit", path, opts.JetStreamMaxStore)
	}
	// Clients: the token, read from the environment (not written in the file).
	if opts.Authorization != token {
		t.Errorf("%s: clients are not required to present $HERD_NATS_TOKEN (authorization.token = %q)", path, opts.Authorization)
	}
	if strings.Contains(conf, token) || regexp.MustCompile(`(?m)^\s*(token|password)\s*:\s*[^$\s]`).MatchString(conf) {
		t.Errorf("%s: a literal credential; read it from the environment ($VAR)", path)
	}
	if opts.TLSConfig == nil {
		t.Errorf("%s: clients connect without TLS (no tls block)", path)
	}
	// Routes: mutual TLS, or a route user.
	if (opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert) && opts.Cluster.Username == "" {
		t.Errorf("%s: routes are not authenticated (want cluster.tls with verify: true)", path)
	}
	return opts, checked
}

// checkNATSPolicy fails unless the NetworkPolicy applies to the NATS pods'
// ingress and lets clients (4222) in only from herd's collectors and
// writers, and monitoring (8222, no authentication) only from NATS pods:
// no rule without a source, none from an IP block or another namespace.
func checkNATSPolicy(t *testing.T, f string, d map[string]any) {
	t.Helper()
	if app, _ := dig(d, "spec", "podSelector", "matchLabels", "app").(string); app != "nats" {
		t.Errorf("%s: NetworkPolicy nats does not select the NATS pods (app: nats)", f)
	}
	if !slices.Contains(strs(dig(d, "spec", "policyTypes")), "Ingress") {
		t.Errorf("%s: NetworkPolicy nats does not restrict ingress", f)
	}
	allowed := map[int]map[string]bool{} // port -> app labels allowed
	rules, _ := dig(d, "spec", "ingress").([]any)
	for i, r := range rules {
		from, _ := dig(r, "from").([]any)
		ports, _ := dig(r, "ports").([]any)
		if len(from) == 0 || len(ports) == 0 {
			t.Errorf("%s: ingress rule %d lets in every source or every port", f, i+1)
			continue
		}
		var apps []string
		for _, src := range from {
			sm, _ := src.(map[string]any)
			if sm["ipBlock"] != nil || sm["namespaceSelector"] != nil {
				t.Errorf("%s: ingress rule %d lets in an IP block or another namespace", f, i+1)
			}
			if a, _ := dig(src, "podSelector", "matchLabels", "app").(string); a != "" {
				apps = append(apps, a)
			}
			exprs, _ := dig(src, "podSelector", "matchExpressions").([]any)
			for _, e := range exprs {
				if dig(e, "key") == "app" && dig(e, "operator") == "In" {
					apps = append(apps, strs(dig(e, "values"))...)
				}
			}
			if len(apps) == 0 {
				t.Errorf("%s: ingress rule %d has a source that is not a set of herd's pods by app label", f, i+1)
			}
		}
		for _, p := range ports {
			port, _ := dig(p, "port").(int)
			if allowed[port] == nil {
				allowed[port] = map[string]bool{}
			}
			for _, a := range apps {
				allowed[port][a] = true
			}
		}
	}
	want := map[int][]string{4222: {"herd-collect", "herd-write"}, 6222: {"nats"}, 8222: {"nats"}}
	for port, apps := range allowed {
		for a := range apps {
			if !slices.Contains(want[port], a) {
				t.Errorf("%s: NetworkPolicy nats lets app=%s reach port %d", f, a, port)
			}
		}
	}
	for _, a := range want[4222] {
		if !allowed[4222][a] {
			t.Errorf("%s: NetworkPolicy nats keeps %s from the client port 4222", f, a)
		}
	}
	if !allowed[6222]["nats"] {
		t.Errorf("%s: NetworkPolicy nats keeps the NATS members from each other's routes (6222)", f)
	}
}

// tokenForm matches how the deploy docs say to make the NATS token:
// HERD_NATS_TOKEN=PREFIX$(openssl rand -hex N), or the herd-nats Secret's
// token=PREFIX$(openssl rand -hex N).
var tokenForm = regexp.MustCompile(`(?:HERD_NATS_TOKEN=|herd-nats --from-literal=token=)([A-Za-z0-9_-]*)\$\(openssl rand -hex (\d+)\)`)

// documentedNATSToken returns a token made the way every deploy doc says
// (they must agree), with the worst random part: hex that starts with
// digits nats-server takes for a number.
func documentedNATSToken(t *testing.T) string {
	t.Helper()
	var forms []string
	for _, f := range []string{"README.md", "docker-compose.yml", "k8s/config.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := tokenForm.FindAllStringSubmatch(string(b), -1)
		if len(m) == 0 {
			t.Fatalf("%s does not say how to make the NATS token (HERD_NATS_TOKEN=...$(openssl rand -hex N))", f)
		}
		for _, x := range m {
			forms = append(forms, x[1]+"/"+x[2])
		}
	}
	for _, f := range forms[1:] {
		if f != forms[0] {
			t.Fatalf("the deploy docs make the NATS token in different ways: %v", forms)
		}
	}
	prefix, n, _ := strings.Cut(forms[0], "/")
	bytes, _ := strconv.Atoi(n)
	random := "12e4" + strings.Repeat("0123456789abcdef", 8)
	if bytes < 16 {
		t.Errorf("the NATS token has %d random bytes; want at least 16", bytes)
	}
	return prefix + random[:2*bytes]
}

// checkTLSURLs fails unless every URL of a comma-separated NATS URL list
// uses TLS.
func checkTLSURLs(t *testing.T, where, urls string) {
	t.Helper()
	for _, u := range strings.Split(urls, ",") {
		if !strings.HasPrefix(strings.TrimSpace(u), "tls://") {
			t.Errorf("%s: NATS URL %q is not tls://", where, u)
		}
	}
}

// checkCredentials fails unless a herd component that talks to NATS gets
// credentials for it, and one whose admin listener binds beyond loopback
// gets the admin token.
func checkCredentials(t *testing.T, where string, args, env []string) {
	t.Helper()
	if !slices.Contains(env, "HERD_NATS_TOKEN") && !slices.Contains(env, "HERD_NATS_CREDS") && !slices.Contains(env, "HERD_NATS_TOKEN_FILE") {
		t.Errorf("%s: no NATS credentials (HERD_NATS_TOKEN, HERD_NATS_TOKEN_FILE or HERD_NATS_CREDS)", where)
	}
	if !slices.Contains(env, "HERD_NATS_CA") {
		t.Errorf("%s: no HERD_NATS_CA to verify the NATS servers' certificates", where)
	}
	for i, a := range args {
		if a == "--admin-listen" && i+1 < len(args) && !strings.HasPrefix(args[i+1], "127.") && !strings.HasPrefix(args[i+1], "localhost:") {
			if !slices.Contains(env, "HERD_ADMIN_TOKEN") && !slices.Contains(env, "HERD_ADMIN_TOKEN_FILE") {
				t.Errorf("%s: admin listener on %s without HERD_ADMIN_TOKEN", where, args[i+1])
			}
		}
	}
}

// secretEnv returns the names of a container's environment variables that
// come from a Secret (env[].valueFrom.secretKeyRef).
func secretEnv(t *testing.T, file string, c map[string]any) []string {
	t.Helper()
	var out []string
	l, _ := c["env"].([]any)
	for _, e := range l {
		name, _ := dig(e, "name").(string)
		if ref, _ := dig(e, "valueFrom", "secretKeyRef", "name").(string); ref != "" {
			out = append(out, name)
		} else if v, _ := dig(e, "value").(string); strings.HasPrefix(name, "HERD_") && strings.Contains(name, "TOKEN") && v != "" {
			t.Errorf("%s: %s set to a literal; take it from a Secret", file, name)
		}
	}
	return out
}

// configMapValue returns one data value of the named ConfigMap.
func configMapValue(t *testing.T, files []string, name, key string) (string, bool) {
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			if d["kind"] == "ConfigMap" && dig(d, "metadata", "name") == name {
				v, ok := dig(d, "data", key).(string)
				return v, ok
			}
		}
	}
	return "", false
}

func TestNATSConfigs(t *testing.T) {
	// Debian installs nats-server in /usr/sbin, which is not on every PATH.
	nsBin, _ := exec.LookPath("nats-server")
	if nsBin == "" {
		if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
			nsBin = "/usr/sbin/nats-server"
		}
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("nats-%d", i)
		path := filepath.Join("nats", name+".conf")
		opts, checked := checkNATSConfig(t, path, name)
		for _, r := range opts.Routes {
			if r.Hostname() == name {
				t.Errorf("%s routes to itself", path)
			}
		}
		if nsBin != "" {
			if out, err := exec.Command(nsBin, "-t", "-c", checked).CombinedOutput(); err != nil {
				t.Errorf("nats-server -t -c %s: %v: %s", path, err, out)
			}
		}
	}
	if nsBin == "" {
		t.Log("no nats-server binary on PATH: configs checked with the module's parser only")
	}
}
