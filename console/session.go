package console

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

const cookieName = "herd_session"

// session is one signed-in browser. It holds a Postgres connection made
// as the user with their password; the password itself is not kept. The
// connection runs one request at a time (mu).
type session struct {
	key     string // sha256 of the cookie value: the map holds no usable token
	user    string
	admin   bool
	csrf    string
	created time.Time

	mu   sync.Mutex // held while conn is in use
	conn *pgx.Conn

	state    sync.Mutex // guards the fields below
	lastSeen time.Time
	running  string // X-Query-Id of the query in flight
	live     int    // open live-event streams
	closed   bool

	gone chan struct{} // closed when the session ends: its live streams stop
}

func (ss *session) close() {
	ss.state.Lock()
	if ss.closed {
		ss.state.Unlock()
		return
	}
	ss.closed = true
	if ss.gone != nil {
		close(ss.gone)
	}
	ss.state.Unlock()
	// A query in flight is cancelled first so Close need not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ss.conn.PgConn().CancelRequest(ctx)
	go func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ss.conn.Close(cctx)
	}()
}

// sessions is the server-side session table, bounded in total and per user.
type sessions struct {
	cfg Config
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(cfg Config) *sessions { return &sessions{cfg: cfg, m: map[string]*session{}} }

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	ss.state.Lock()
	defer ss.state.Unlock()
	return ss.closed || now.Sub(ss.created) >= s.cfg.SessionTTL || now.Sub(ss.lastSeen) >= s.cfg.IdleTTL || ss.conn.IsClosed()
}

// add stores ss and returns its cookie token. Past the per-user cap the
// user's oldest session closes; past the total cap expired sessions are
// dropped, and if none is, the sign-in is refused.
func (s *sessions) add(ss *session) (string, error) {
	now := s.cfg.Now()
	tok := randomToken()
	ss.key = hashToken(tok)
	s.mu.Lock()
	var drop []*session
	var oldest *session
	n := 0
	for k, o := range s.m {
		if s.expired(o, now) {
			delete(s.m, k)
			drop = append(drop, o)
			continue
		}
		if o.user == ss.user {
			n++
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
	}
	if n >= s.cfg.MaxUserSession && oldest != nil {
		delete(s.m, oldest.key)
		drop = append(drop, oldest)
	}
	full := len(s.m) >= s.cfg.MaxSessions
	if !full {
		s.m[ss.key] = ss
	}
	s.mu.Unlock()
	for _, o := range drop {
		o.close()
	}
	if full {
		return "", errorf(http.StatusServiceUnavailable, "the console has %d sessions open, its limit: try again later, or ask an operator to raise --console-max-sessions", s.cfg.MaxSessions)
	}
	return tok, nil
}

// get returns the live session of a cookie token and marks it used.
// An expired one is removed and closed.
func (s *sessions) get(tok string) (*session, bool) {
	key := hashToken(tok)
	now := s.cfg.Now()
	s.mu.Lock()
	ss, ok := s.m[key]
	if ok && s.expired(ss, now) {
		delete(s.m, key)
		s.mu.Unlock()
		ss.close()
		return nil, true
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	ss.state.Lock()
	ss.lastSeen = now
	ss.state.Unlock()
	return ss, false
}

// alive reports whether ss is still in the table and not expired: a
// long request (a live stream) asks again while it runs.
func (s *sessions) alive(ss *session) bool {
	now := s.cfg.Now()
	s.mu.Lock()
	cur, ok := s.m[ss.key]
	s.mu.Unlock()
	return ok && cur == ss && !s.expired(ss, now)
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *sessions) remove(ss *session) {
	s.mu.Lock()
	delete(s.m, ss.key)
	s.mu.Unlock()
	ss.close()
}

func (s *sessions) expire() {
	now := s.cfg.Now()
	var drop []*session
	s.mu.Lock()
	for k, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, k)
			drop = append(drop, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range drop {
		ss.close()
	}
}

func (s *sessions) closeAll() {
	s.mu.Lock()
	all := s.m
	s.m = map[string]*session{}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close()
	}
}

// limiter is a token bucket per key (client IP, user name): burst
// attempts, then one per refill. The table is bounded: full buckets are
// forgotten, and past maxKeys the fullest are.
type limiter struct {
	burst  float64
	refill time.Duration
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const maxLimiterKeys = 100000

func newLimiter(burst int, refill time.Duration, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), refill: refill, now: now, m: map[string]*bucket{}}
}

// take spends one attempt of every key, or none when one of them is out:
// then it returns how long until it has one. A refused attempt adds no
// key, so a client that is out of attempts cannot grow the table; past
// maxLimiterKeys keys (after forgetting full buckets) every attempt with a
// new key is refused until some refill.
func (l *limiter) take(keys ...string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	fresh := 0
	for _, k := range keys {
		b := l.m[k]
		if b == nil {
			fresh++
			continue
		}
		if lvl := b.level(now, l); lvl < 1 {
			wait = max(wait, time.Duration((1-lvl)*float64(l.refill)))
		}
	}
	if wait > 0 {
		return false, wait
	}
	if fresh > 0 && len(l.m)+fresh > maxLimiterKeys {
		for k, b := range l.m {
			if b.level(now, l) >= l.burst {
				delete(l.m, k)
			}
		}
		if len(l.m)+fresh > maxLimiterKeys {
			return false, l.refill
		}
	}
	for _, k := range keys {
		b := l.m[k]
		if b == nil {
			b = &bucket{tokens: l.burst, at: now}
			l.m[k] = b
		}
		b.tokens, b.at = b.level(now, l)-1, now
	}
	return true, 0
}

// allow reports whether every key has an attempt left, spending none;
// when one has not, how long until it has.
func (l *limiter) allow(keys ...string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		if b := l.m[k]; b != nil {
			if lvl := b.level(now, l); lvl < 1 {
				wait = max(wait, time.Duration((1-lvl)*float64(l.refill)))
			}
		}
	}
	return wait == 0, wait
}

// spend takes one attempt from every key (a failure). A new key past
// maxLimiterKeys is added only after full buckets are forgotten; when the
// table is still full it is not counted.
func (l *limiter) spend(keys ...string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		b := l.m[k]
		if b == nil {
			if len(l.m) >= maxLimiterKeys {
				for k, o := range l.m {
					if o.level(now, l) >= l.burst {
						delete(l.m, k)
					}
				}
				if len(l.m) >= maxLimiterKeys {
					continue
				}
			}
			b = &bucket{tokens: l.burst, at: now}
			l.m[k] = b
		}
		b.tokens, b.at = max(0, b.level(now, l)-1), now
	}
}

// network is the client's network for the per-name limit: its /24 (IPv4)
// or /64 (IPv6).
func network(ip netip.Addr) string {
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// address is the client's key for the per-address limit: an IPv4
// address itself, an IPv6 one by its /64, which one host usually holds
// whole (one address per attempt would otherwise never run out).
func address(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return network(ip)
}

func (b *bucket) level(now time.Time, l *limiter) float64 {
	return math.Min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.refill))
}

// errWrongLogin is the one answer to a failed sign-in, whatever failed.
var errWrongLogin = errorf(http.StatusUnauthorized, "wrong user or password")

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); (o != "" && o != s.ownOrigin(r)) || strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
		writeError(w, http.StatusForbidden, "sign-in from another site is refused: open the console itself")
		return
	}
	var req loginRequest
	if err := readJSON(w, r, 4<<10, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.User == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, `send {"user": "...", "password": "..."}`)
		return
	}
	if len(req.User) > 63 || len(req.Password) > 1024 {
		writeError(w, http.StatusUnauthorized, errWrongLogin.msg)
		return
	}
	// Every attempt counts against the client's address; only failures
	// count against the name, from the client's network (strict) and
	// from everywhere (looser). A correct password gets through unless
	// this network or very many have been guessing it, so one address
	// sending wrong passwords cannot lock the person out.
	ip := s.clientIP(r)
	nameKeys := []string{"user:" + req.User + "@" + network(ip)}
	ok, wait := s.limiter.take("ip:" + address(ip))
	if ok {
		ok, wait = s.limiter.allow(nameKeys...)
	}
	if ok {
		ok, wait = s.names.allow("user:" + req.User)
	}
	if !ok {
		s.m.signIns.WithLabelValues("limited").Inc()
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many sign-in attempts: try again in %d seconds", secs))
		return
	}
	ss, err := s.signIn(r.Context(), req.User, req.Password)
	if err != nil {
		var ae *apiError
		result := "unavailable"
		if !errors.As(err, &ae) || ae.status == http.StatusUnauthorized {
			result = "refused"
			s.limiter.spend(nameKeys...)
			s.names.spend("user:" + req.User)
			s.log.Info("console sign-in refused", "user", req.User, "ip", s.clientIP(r).String(), "reason", err)
			err = errWrongLogin
		}
		s.m.signIns.WithLabelValues(result).Inc()
		s.fail(w, r, err)
		return
	}
	tok, err := s.sessions.add(ss)
	if err != nil {
		s.m.signIns.WithLabelValues("unavailable").Inc()
		ss.close()
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.cfg.SecureCookies || s.https(r), MaxAge: int(s.cfg.SessionTTL.Seconds()),
	})
	s.m.signIns.WithLabelValues("ok").Inc()
	s.log.Info("console sign-in", "user", ss.user, "admin", ss.admin, "ip", s.clientIP(r).String())
	writeJSON(w, http.StatusOK, map[string]any{"user": ss.user, "admin": ss.admin, "csrf": ss.csrf})
}

// errNoAuthAsked is how pgconn reports a server that let a connection in
// without asking for a password (require_auth).
const errNoAuthAsked = "authentication method requirement"

// signIn checks user's password and opens their connection.
//
// A server that trusts the connection (pg_hba trust) lets anyone in as
// anyone, so a connection alone proves nothing. The password is checked
// against the role's verifier in pg_authid when herd may read it
// (superuser), and the connection requires the server to ask for a
// password; when it does not, only the verifier check counts, and without
// one sign-in is refused with what to configure.
func (s *Server) signIn(ctx context.Context, user, password string) (*session, error) {
	verified, err := s.checkVerifier(ctx, user, password)
	if err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("console database URL: %w", err)
	}
	cc.User, cc.Password = user, password
	cc.RuntimeParams["application_name"] = "herd console"
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	cc.ConnectTimeout = 10 * time.Second
	// A cancelled request cancels its query; it does not break the
	// session's connection.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	// One message (a row) larger than this is refused before it is
	// read: the byte limit of a result counts rows only once they are
	// in memory.
	maxBody := s.maxRowBytes()
	cc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f := pgproto3.NewFrontend(r, w)
		f.SetMaxBodyLen(maxBody)
		return f
	}
	cc.RequireAuth = "!none"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil && strings.Contains(err.Error(), errNoAuthAsked) {
		if !verified {
			s.log.Error("console sign-in impossible: Postgres does not check passwords and herd cannot read pg_authid", "user", user)
			return nil, errorf(http.StatusServiceUnavailable, "Postgres lets %s in without a password (pg_hba trust) and herd cannot check it (it reads pg_authid only as a superuser): require scram-sha-256 for the console's connections in pg_hba.conf, or run herd as a superuser", user)
		}
		cc.RequireAuth = ""
		conn, err = pgx.ConnectConfig(ctx, cc)
	}
	if err != nil {
		return nil, errorf(http.StatusUnauthorized, "connect as %s: %v", user, err)
	}
	ss := &session{user: user, csrf: randomToken(), created: s.cfg.Now(), conn: conn, gone: make(chan struct{})}
	ss.lastSeen = ss.created
	ss.admin, err = s.isAdmin(ctx, user)
	if err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	return ss, nil
}

// maxRowBytes is the largest message the session's connection reads: the
// result byte limit plus room for the row's framing, at least 1 MiB.
func (s *Server) maxRowBytes() int {
	return max(s.cfg.MaxResultBytes, 1<<20) + 64<<10
}

// isAdmin reports whether user is a member of herd_admin, as herd's own
// connection sees it: nothing the user sets in their session (search_path,
// functions or operators of their schema) takes part.
func (s *Server) isAdmin(ctx context.Context, user string) (bool, error) {
	var admin bool
	err := s.cfg.DB.QueryRow(ctx, `SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $2)
			AND EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1)
		THEN pg_catalog.pg_has_role($1::pg_catalog.name, $2::pg_catalog.name, 'MEMBER') ELSE false END`, user, AdminRole).Scan(&admin)
	if err != nil {
		return false, fmt.Errorf("check %s membership of %s: %w", AdminRole, user, err)
	}
	return admin, nil
}

// checkVerifier compares password with the role's stored verifier. It
// returns false, nil when herd cannot read it (not a superuser) or the role
// has none, and errWrongLogin when it does not match or no such role logs in.
func (s *Server) checkVerifier(ctx context.Context, user, password string) (bool, error) {
	var stored *string
	var login, expired bool
	// An expired password (VALID UNTIL in the past) no longer signs in,
	// as Postgres's own password check refuses it.
	err := s.cfg.DB.QueryRow(ctx, `SELECT rolpassword, rolcanlogin,
			coalesce(rolvaliduntil OPERATOR(pg_catalog.<) pg_catalog.now(), false)
		FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) $1`, user).Scan(&stored, &login, &expired)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return false, nil // not a superuser: only the server's own check is left
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (!login || expired)) {
		// As long as a real check, so the answer's time does not tell
		// which names exist.
		verifyPassword(dummyVerifier, user, password)
		return false, errWrongLogin
	}
	if err != nil {
		return false, fmt.Errorf("read the verifier of %s: %w", user, err)
	}
	if stored == nil {
		// As long as a real check, like a missing role.
		verifyPassword(dummyVerifier, user, password)
		return false, errorf(http.StatusUnauthorized, "role %s has no password", user)
	}
	if !strings.HasPrefix(*stored, "SCRAM-SHA-256$") {
		// md5 (or a format herd does not read) costs next to nothing:
		// pay a SCRAM check too, so the time does not tell the
		// verifier's kind either.
		verifyPassword(dummyVerifier, user, password)
	}
	ok, known := verifyPassword(*stored, user, password)
	if !known {
		return false, nil
	}
	if !ok {
		return false, errWrongLogin
	}
	return true, nil
}

// scramKey derives SCRAM's salted password (a variable so a test can count
// the derivations each failure path pays).
var scramKey = pbkdf2.Key[hash.Hash]

// dummyVerifier is checked against when the role does not exist.
const dummyVerifier = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// verifyPassword checks password against a pg_authid.rolpassword value:
// SCRAM-SHA-256$iter:salt$StoredKey:ServerKey, or md5 of password+user.
// known is false for a format it does not read.
func verifyPassword(stored, user, password string) (ok, known bool) {
	if rest, isMD5 := strings.CutPrefix(stored, "md5"); isMD5 && len(rest) == 32 {
		sum := md5.Sum([]byte(password + user))
		return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(rest)) == 1, true
	}
	rest, isScram := strings.CutPrefix(stored, "SCRAM-SHA-256$")
	if !isScram {
		return false, false
	}
	params, keys, ok1 := strings.Cut(rest, "$")
	iterS, saltS, ok2 := strings.Cut(params, ":")
	storedS, serverS, ok3 := strings.Cut(keys, ":")
	iter, err := strconv.Atoi(iterS)
	if !ok1 || !ok2 || !ok3 || err != nil || iter <= 0 || iter > 10_000_000 {
		return false, false
	}
	b64 := base64.StdEncoding
	salt, err1 := b64.DecodeString(saltS)
	storedKey, err2 := b64.DecodeString(storedS)
	serverKey, err3 := b64.DecodeString(serverS)
	if err1 != nil || err2 != nil || err3 != nil {
		return false, false
	}
	salted, err := scramKey(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return false, false
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	client := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	return subtle.ConstantTimeCompare(client[:], storedKey)&subtle.ConstantTimeCompare(server, serverKey) == 1, true
}

type ctxKey struct{}

func sessionOf(r *http.Request) *session { return r.Context().Value(ctxKey{}).(*session) }

// auth requires a live session (and membership of herd_admin when admin),
// and on every state-changing request the CSRF token and a same-site
// origin.
func (s *Server) auth(admin bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss, why := s.current(r)
		if ss == nil {
			writeError(w, http.StatusUnauthorized, why)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if s.crossSite(r) {
				writeError(w, http.StatusForbidden, "request from another site refused")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(ss.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
				return
			}
		}
		if admin {
			// Membership is checked on every operator request, so a
			// REVOKE takes effect at once, not when the session ends.
			ok, err := s.isAdmin(r.Context(), ss.user)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			ss.state.Lock()
			ss.admin = ok
			ss.state.Unlock()
			if !ok {
				writeError(w, http.StatusForbidden, "operators only: this needs membership of the "+AdminRole+" role")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)))
	})
}

// current returns the request's session, or nil and why not.
func (s *Server) current(r *http.Request) (*session, string) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, "sign in first (POST /api/login)"
	}
	ss, expired := s.sessions.get(c.Value)
	if ss == nil {
		if expired {
			return nil, "your session expired: sign in again"
		}
		return nil, "no such session: sign in again"
	}
	return ss, ""
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.remove(sessionOf(r))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.cfg.SecureCookies || s.https(r), MaxAge: -1})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	ss := sessionOf(r)
	admin, err := s.isAdmin(r.Context(), ss.user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss.state.Lock()
	ss.admin = admin
	ss.state.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"user": ss.user, "admin": admin, "csrf": ss.csrf})
}
