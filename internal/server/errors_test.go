package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/golang-jwt/jwt/v5"

	"github.com/keyward/keyward/internal/servertest"
)

const hsmResource = "https://managedhsm.azure.net"

func b64(n int) string { return base64.RawURLEncoding.EncodeToString(make([]byte, n)) }

func TestBadInputAnswersAzureErrors(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	mk := func(name string, p azkeys.CreateKeyParameters) {
		if _, err := env.Keys.CreateKey(ctx, name, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	signOnly := []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationSign), to.Ptr(azkeys.KeyOperationVerify)}
	mk("r", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyOps: signOnly})
	mk("off", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}})
	mk("old", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), KeyAttributes: &azkeys.KeyAttributes{Expires: to.Ptr(time.Now().Add(-time.Hour))}})
	mk("soon", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), KeyAttributes: &azkeys.KeyAttributes{NotBefore: to.Ptr(time.Now().Add(time.Hour))}})
	tok := env.Token(env.Cred, hsmResource)
	sign := func(alg string, value string) string { return fmt.Sprintf(`{"alg":%q,"value":%q}`, alg, value) }

	cases := map[string]struct {
		method, path, body string
		status             int
		code               string
	}{
		"malformed JSON":           {"POST", "/keys/new1/create", `{"kty":`, 400, "BadParameter"},
		"empty body":               {"POST", "/keys/new1/create", ``, 400, "BadParameter"},
		"wrong field type":         {"POST", "/keys/new1/create", `{"kty":"RSA","key_size":"big"}`, 400, "BadParameter"},
		"unknown kty":              {"POST", "/keys/new1/create", `{"kty":"DSA"}`, 400, "BadParameter"},
		"unknown curve":            {"POST", "/keys/new1/create", `{"kty":"EC-HSM","crv":"P-192"}`, 400, "BadParameter"},
		"RSA size":                 {"POST", "/keys/new1/create", `{"kty":"RSA-HSM","key_size":1024}`, 400, "BadParameter"},
		"AES size":                 {"POST", "/keys/new1/create", `{"kty":"oct-HSM","key_size":512}`, 400, "BadParameter"},
		"RSA exponent":             {"POST", "/keys/new1/create", `{"kty":"RSA-HSM","public_exponent":3}`, 400, "BadParameter"},
		"unknown key op":           {"POST", "/keys/new1/create", `{"kty":"RSA-HSM","key_ops":["fly"]}`, 400, "BadParameter"},
		"bad key name":             {"POST", "/keys/no_underscores/create", `{"kty":"RSA-HSM"}`, 400, "BadParameter"},
		"import without private":   {"PUT", "/keys/new1", `{"key":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`, 400, "BadParameter"},
		"unknown algorithm":        {"POST", "/keys/r/sign", sign("XS256", b64(32)), 400, "BadParameter"},
		"algorithm for other type": {"POST", "/keys/r/sign", sign("ES256", b64(32)), 400, "BadParameter"},
		"invalid base64url":        {"POST", "/keys/r/sign", sign("RS256", "!!not base64!!"), 400, "BadParameter"},
		"wrong digest length":      {"POST", "/keys/r/sign", sign("RS256", b64(20)), 400, "BadParameter"},
		"missing value":            {"POST", "/keys/r/sign", `{"alg":"RS256"}`, 400, "BadParameter"},
		"oversize body":            {"POST", "/keys/r/sign", `{"alg":"RS256","value":"` + strings.Repeat("A", 5<<20) + `"}`, 400, "BadParameter"},
		"operation not in key_ops": {"POST", "/keys/r/encrypt", `{"alg":"RSA-OAEP","value":"AQAB"}`, 403, "Forbidden"},
		"disabled key":             {"POST", "/keys/off/sign", sign("RS256", b64(32)), 403, "Forbidden"},
		"expired key":              {"POST", "/keys/old/sign", sign("ES256", b64(32)), 403, "Forbidden"},
		"key not yet valid":        {"POST", "/keys/soon/sign", sign("ES256", b64(32)), 403, "Forbidden"},
		"unknown key":              {"GET", "/keys/nope", ``, 404, "KeyNotFound"},
		"unknown key sign":         {"POST", "/keys/nope/sign", sign("RS256", b64(32)), 404, "KeyNotFound"},
		"unknown version":          {"GET", "/keys/r/0123456789abcdef0123456789abcdef", ``, 404, "KeyNotFound"},
		"unknown deleted key":      {"GET", "/deletedkeys/nope", ``, 404, "KeyNotFound"},
		"rng count zero":           {"POST", "/rng", `{"count":0}`, 400, "BadParameter"},
		"rng count too large":      {"POST", "/rng", `{"count":129}`, 400, "BadParameter"},
		"maxresults out of range":  {"GET", "/keys?maxresults=26", ``, 400, "BadParameter"},
		"Notify after creation": {"PUT", "/keys/r/rotationpolicy",
			`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P1Y"}}`, 400, "BadParameter"},
		"unknown lifetime action": {"PUT", "/keys/r/rotationpolicy",
			`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P30D"},"action":{"type":"Explode"}}]}`, 400, "BadParameter"},
		"rotation policy too short": {"PUT", "/keys/r/rotationpolicy", `{"lifetimeActions":[],"attributes":{"expiryTime":"P7D"}}`, 400, "BadParameter"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := c.path
			if strings.Contains(path, "?") {
				path += "&api-version=7.6"
			} else {
				path += "?api-version=7.6"
			}
			var body any
			if c.body != "" || c.method == "POST" {
				body = c.body
			}
			r := env.Do(c.method, path, tok, body)
			if r.Status != c.status || r.ErrorCode() != c.code {
				t.Fatalf("HTTP %d %s, want %d %s; body %.300s", r.Status, r.ErrorCode(), c.status, c.code, r.Body)
			}
			if r.Header.Get("x-ms-error-code") != c.code {
				t.Fatalf("x-ms-error-code = %q", r.Header.Get("x-ms-error-code"))
			}
			var env struct{ Error struct{ Message string } }
			json.Unmarshal(r.Body, &env)
			if len(env.Error.Message) < 10 {
				t.Fatalf("message %q is not useful", env.Error.Message)
			}
		})
	}
	// None of the refused creations left a key behind.
	r := env.Do("GET", "/keys/new1?api-version=7.6", tok, nil)
	if r.Status != 404 {
		t.Fatalf("a refused create left key new1: %d %s", r.Status, r.Body)
	}
}

func TestAPIVersions(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tok := env.Token(env.Cred, hsmResource)
	for _, v := range []string{"7.2", "7.3", "7.4", "7.4-preview.1", "7.5", "7.6", "2025-06-01", "2025-07-01"} {
		if r := env.Do("GET", "/keys?api-version="+v, tok, nil); r.Status != 200 {
			t.Fatalf("api-version %s: %d %s", v, r.Status, r.Body)
		}
	}
	for _, v := range []string{"", "1999-01-01", "7.7"} {
		r := env.Do("GET", "/keys?api-version="+v, tok, nil)
		if r.Status != 400 || r.ErrorCode() != "BadParameter" {
			t.Fatalf("api-version %q: %d %s", v, r.Status, r.Body)
		}
	}
	// Trailing and doubled slashes are served, not redirected.
	if _, err := env.Keys.CreateKey(ctx, "s", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/keys/s/?api-version=7.6", "//keys//s?api-version=7.6"} {
		if r := env.Do("GET", p, tok, nil); r.Status != 200 {
			t.Fatalf("GET %s: %d", p, r.Status)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	r := env.Do("POST", "/keys/k/create?api-version=2025-07-01", "", nil)
	want := fmt.Sprintf(`Bearer authorization="%s%s", resource="https://managedhsm.azure.net"`, env.Boot.AuthorityHost, env.Boot.TenantID)
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != want || len(r.Body) != 0 {
		t.Fatalf("unauthenticated: %d %q %q", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
	good := env.Token(env.Cred, hsmResource)
	parts := strings.Split(good, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])

	// Tampered: the payload names another object id; the signature stays.
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), `"oid":"`, `"oid":"0`, 1))) + "." + parts[2]
	// Unsigned: alg none with the same claims.
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	// HS256 keyed with the public modulus from the JWKS: the confusion attack.
	jwksResp := env.Do("GET", env.Boot.AuthorityHost+env.Boot.TenantID+"/discovery/v2.0/keys", "", nil)
	var jwks struct{ Keys []struct{ Kid, N string } }
	json.Unmarshal(jwksResp.Body, &jwks)
	var mc jwt.MapClaims
	json.Unmarshal(claims, &mc)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, mc)
	hs.Header["kid"] = jwks.Keys[0].Kid
	hsTok, _ := hs.SignedString([]byte(jwks.Keys[0].N))
	// A token for Microsoft Graph presented to the HSM.
	graphTok := env.Token(env.Cred, "https://graph.microsoft.com")

	for name, tok := range map[string]string{
		"garbage": "not-a-jwt", "tampered": tampered, "unsigned": none, "hs256 confusion": hsTok, "wrong audience": graphTok,
	} {
		r := env.Do("GET", "/keys?api-version=7.6", tok, nil)
		if r.Status != 401 || r.ErrorCode() != "Unauthorized" || r.Header.Get("WWW-Authenticate") != want {
			t.Errorf("%s token: %d %s %q", name, r.Status, r.ErrorCode(), r.Header.Get("WWW-Authenticate"))
		}
	}
	if r := env.Do("GET", "/keys?api-version=7.6", good, nil); r.Status != 200 {
		t.Fatalf("good token: %d %s", r.Status, r.Body)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tokenURL := env.Boot.AuthorityHost + env.Boot.TenantID + "/oauth2/v2.0/token"
	post := func(form string) (*http.Response, map[string]any) {
		resp, err := env.HTTP.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	cases := map[string]struct {
		form   string
		status int
		code   string
	}{
		"wrong secret":  {"grant_type=client_credentials&client_id=" + env.Boot.ClientID + "&client_secret=wrong&scope=https://managedhsm.azure.net/.default", 401, "invalid_client"},
		"unknown app":   {"grant_type=client_credentials&client_id=nobody&client_secret=x&scope=https://managedhsm.azure.net/.default", 401, "invalid_client"},
		"unknown scope": {"grant_type=client_credentials&client_id=" + env.Boot.ClientID + "&client_secret=x&scope=https://evil.example/.default", 400, "invalid_scope"},
		"no grant":      {"client_id=x&scope=https://managedhsm.azure.net/.default", 400, "invalid_request"},
		"bad grant":     {"grant_type=magic&scope=https://managedhsm.azure.net/.default", 400, "unsupported_grant_type"},
	}
	for name, c := range cases {
		resp, m := post(c.form)
		if resp.StatusCode != c.status || m["error"] != c.code || m["error_description"] == "" {
			t.Errorf("%s: %d %v", name, resp.StatusCode, m)
		}
	}
	resp, err := env.HTTP.Post(env.Boot.AuthorityHost+"00000000-0000-0000-0000-000000000000/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("unknown tenant: %v %v", resp.StatusCode, err)
	}
}

func TestOnlyInitialAdministratorsUseTheHSM(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	admin := env.Token(env.Cred, "https://graph.microsoft.com")
	r := env.Do("POST", env.Boot.AuthorityHost+"v1.0/servicePrincipals", admin, map[string]string{"displayName": "app"})
	var sp struct{ ID, AppID string }
	if json.Unmarshal(r.Body, &sp); r.Status != 201 || sp.AppID == "" {
		t.Fatalf("create sp: %d %s", r.Status, r.Body)
	}
	r = env.Do("POST", env.Boot.AuthorityHost+"v1.0/servicePrincipals/"+sp.ID+"/addPassword", admin, map[string]any{})
	var pw struct{ SecretText string }
	if json.Unmarshal(r.Body, &pw); pw.SecretText == "" {
		t.Fatalf("addPassword: %d %s", r.Status, r.Body)
	}
	appCred := env.Credential(sp.AppID, pw.SecretText)
	_, err := env.KeysClient(appCred).CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	expectStatus(t, err, 403, "AccessDenied")
	if !strings.Contains(err.Error(), "Not authorized to access Microsoft.KeyVault/managedHsm/keys/create on /keys") {
		t.Fatalf("denial message: %v", err)
	}
	// The app may read the directory but not change it.
	appGraph := env.Token(appCred, "https://graph.microsoft.com")
	if r := env.Do("GET", env.Boot.AuthorityHost+"v1.0/groups", appGraph, nil); r.Status != 200 {
		t.Fatalf("read groups: %d", r.Status)
	}
	r = env.Do("POST", env.Boot.AuthorityHost+"v1.0/groups", appGraph, map[string]string{"displayName": "x", "mailNickname": "x"})
	if r.Status != 403 || r.ErrorCode() != "Authorization_RequestDenied" {
		t.Fatalf("non-admin group create: %d %s", r.Status, r.Body)
	}
}
