package salesforce

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/secrets"
)

// Credentials are how herd signs in: a connected app's refresh token
// (ClientID, ClientSecret, RefreshToken) or the JWT bearer flow (ClientID,
// Username and the private key whose certificate the connected app holds).
type Credentials struct {
	ClientID     string
	ClientSecret string
	RefreshToken string
	Username     string
	JWTKeyFile   string // PEM private key (PKCS#1 or PKCS#8), mode 0600
}

// Missing is "" when the credentials name a flow, or what to set.
func (c Credentials) Missing() string {
	switch {
	case c.ClientID == "":
		return "$SALESFORCE_CLIENT_ID, with $SALESFORCE_CLIENT_SECRET and $SALESFORCE_REFRESH_TOKEN (refresh-token flow) or $SALESFORCE_USERNAME and $SALESFORCE_JWT_KEY_FILE (JWT bearer flow)"
	case c.RefreshToken != "" && c.ClientSecret != "":
		return ""
	case c.Username != "" && c.JWTKeyFile != "":
		return ""
	}
	return "$SALESFORCE_CLIENT_SECRET and $SALESFORCE_REFRESH_TOKEN, or $SALESFORCE_USERNAME and $SALESFORCE_JWT_KEY_FILE"
}

// tokens gets and renews access tokens. Salesforce does not say when a
// session ends (the org's timeout does), so a token is renewed once older
// than ttl, and at once when the API answers INVALID_SESSION_ID.
type tokens struct {
	creds    Credentials
	loginURL string // token endpoint host
	audience string // the JWT bearer flow's aud
	instance string // API host; "" takes the token response's instance_url
	// instanceOK says whether the instance_url a token response names may
	// receive the token.
	instanceOK func(string) error
	ttl        time.Duration
	http       *http.Client
	now        func() time.Time
	renewed    func() // counts renewals (metrics)

	mu       sync.Mutex
	token    string
	apiURL   string
	issuedAt time.Time
}

// get returns a valid access token and the instance URL to call.
func (t *tokens) get(ctx context.Context) (string, string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.now().Sub(t.issuedAt) < t.ttl {
		return t.token, t.apiURL, nil
	}
	if err := t.renew(ctx); err != nil {
		return "", "", err
	}
	return t.token, t.apiURL, nil
}

// expired drops token if it is still the current one: the next get renews.
func (t *tokens) expired(token string) {
	t.mu.Lock()
	if t.token == token {
		t.token = ""
	}
	t.mu.Unlock()
}

func (t *tokens) renew(ctx context.Context) error {
	form := url.Values{}
	if t.creds.RefreshToken != "" && t.creds.ClientSecret != "" {
		form.Set("grant_type", "refresh_token")
		form.Set("client_id", t.creds.ClientID)
		form.Set("client_secret", t.creds.ClientSecret)
		form.Set("refresh_token", t.creds.RefreshToken)
	} else {
		assertion, err := t.assertion()
		if err != nil {
			return err
		}
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
		form.Set("assertion", assertion)
	}
	endpoint := t.loginURL + "/services/oauth2/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("Salesforce token request to %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("Salesforce token response from %s: %w", endpoint, err)
	}
	var r struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &r)
	if resp.StatusCode != http.StatusOK || r.AccessToken == "" {
		// The error body never holds a secret; the request's form does and
		// is not repeated here.
		return fmt.Errorf("Salesforce refused the sign-in at %s (%s %s: %s): check the connected app's client id and secret, the refresh token (revoked?) or, for the JWT flow, the user's pre-authorization and the certificate",
			endpoint, resp.Status, r.Error, r.Description)
	}
	t.token = r.AccessToken
	t.issuedAt = t.now()
	t.apiURL = t.instance
	if t.apiURL == "" {
		t.apiURL = strings.TrimRight(r.InstanceURL, "/")
		if t.apiURL == "" {
			t.token = ""
			return errors.New("Salesforce's token response named no instance_url: set --salesforce-instance-url")
		}
		if err := t.instanceOK(t.apiURL); err != nil {
			t.token = ""
			return fmt.Errorf("the token endpoint %s named instance_url %.200q, refused: %w", endpoint, t.apiURL, err)
		}
	}
	if t.renewed != nil {
		t.renewed()
	}
	return nil
}

// assertion is the JWT bearer flow's signed claim (RFC 7523): RS256 over
// iss = client id, sub = username, aud = the authorization server
// (login.salesforce.com, test.salesforce.com or a community URL), exp a
// few minutes on.
func (t *tokens) assertion() (string, error) {
	key, err := readKey(t.creds.JWTKeyFile)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": t.creds.ClientID,
		"sub": t.creds.Username,
		"aud": t.audience,
		"exp": t.now().Add(3 * time.Minute).Unix(),
	})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign the Salesforce JWT assertion: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// readKey reads an RSA private key from a file only its owner may read.
func readKey(path string) (*rsa.PrivateKey, error) {
	if err := secrets.CheckFile(path); err != nil {
		return nil, fmt.Errorf("Salesforce JWT key: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("Salesforce JWT key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("Salesforce JWT key %s holds no PEM block: give the private key whose certificate the connected app has", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("Salesforce JWT key %s: not an RSA private key: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("Salesforce JWT key %s is not an RSA key (the JWT bearer flow signs with RS256)", path)
	}
	return rk, nil
}
