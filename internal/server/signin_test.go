package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/servertest"
)

// browser is a cookie-keeping HTTPS client that does not follow
// redirects, so a test sees where the sign-in sends it.
func browser(env *servertest.Env) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: env.HTTP.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var flowField = regexp.MustCompile(`name="flow" value="([^"]+)"`)

// signInPage GETs the authorize URL and returns the page's flow field.
func signInPage(t *testing.T, b *http.Client, authorize string) string {
	t.Helper()
	resp, err := b.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := flowField.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("the sign-in page: %d %s", resp.StatusCode, body)
	}
	return string(m[1])
}

func post(t *testing.T, b *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := b.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestBrowserSignInWithPKCE: a public client's authorization-code flow
// with PKCE, as az's and MSAL's browser sign-in run it: the page and its
// cookie are locked down, a form from elsewhere is refused, the user's
// password and then TOTP code give a code at the loopback redirect, and
// the code gives tokens once, only with the right verifier.
func TestBrowserSignInWithPKCE(t *testing.T) {
	t.Parallel()
	p := startPIM(t)
	alice, aliceTok := p.user(t, "alice")
	authz := p.Boot.AuthorityHost + p.Boot.TenantID + "/oauth2/v2.0/authorize"
	token := p.Boot.AuthorityHost + p.Boot.TenantID + "/oauth2/v2.0/token"
	verifier := strings.Repeat("k", 50)
	q := url.Values{"client_id": {identity.AzureCLIClientID}, "response_type": {"code"}, "redirect_uri": {"http://localhost:53121/"},
		"scope": {"https://managedhsm.azure.net/.default offline_access"}, "state": {"xyz"},
		"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}}

	// The page and its cookie.
	b := browser(p.Env)
	resp, err := b.Get(authz + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	// No inline script anywhere: the one script is a file of this server.
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("page headers: %v", resp.Header)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("the sign-in cookie: %+v", cookies)
	}

	// Requests the page refuses: never a redirect to an unregistered URI.
	for name, mutate := range map[string]func(url.Values){
		"an unknown client":         func(v url.Values) { v.Set("client_id", "0f0f0f0f-0000-4000-8000-000000000000") },
		"a foreign redirect URI":    func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") },
		"a lookalike loopback host": func(v url.Values) { v.Set("redirect_uri", "http://localhost.evil.example/") },
	} {
		v := url.Values{}
		for k, x := range q {
			v[k] = x
		}
		mutate(v)
		r, _ := b.Get(authz + "?" + v.Encode())
		r.Body.Close()
		if r.StatusCode != 400 || r.Header.Get("Location") != "" {
			t.Errorf("%s: %d to %q", name, r.StatusCode, r.Header.Get("Location"))
		}
	}
	noPKCE := url.Values{}
	for k, x := range q {
		noPKCE[k] = x
	}
	noPKCE.Del("code_challenge")
	if r, _ := b.Get(authz + "?" + noPKCE.Encode()); r.StatusCode != 302 || !strings.Contains(r.Header.Get("Location"), "error=invalid_request") {
		t.Errorf("without PKCE: %d %s", r.StatusCode, r.Header.Get("Location"))
	}

	// A form posted without the page's cookie (from another site) is refused.
	flow := signInPage(t, b, authz+"?"+q.Encode())
	stranger := browser(p.Env)
	if r, body := post(t, stranger, authz, url.Values{"flow": {flow}, "username": {"alice@keyward.test"}, "password": {"Correct horse 1"}}); r.StatusCode != 403 {
		t.Fatalf("a form without the cookie: %d %s", r.StatusCode, body)
	}
	// An altered flow is refused.
	if r, _ := post(t, b, authz, url.Values{"flow": {"x" + flow}, "username": {"alice@keyward.test"}, "password": {"Correct horse 1"}}); r.StatusCode != 400 {
		t.Fatalf("an altered flow: %d", r.StatusCode)
	}
	// A wrong password shows the page again.
	// A wrong password shows the page again, as a 400: the audit record
	// says the sign-in failed and names the account.
	if r, body := post(t, b, authz, url.Values{"flow": {flow}, "username": {"alice@keyward.test"}, "password": {"wrong-guess"}}); r.StatusCode != 400 ||
		!strings.Contains(body, "incorrect") {
		t.Fatalf("a wrong password: %d %s", r.StatusCode, body)
	}
	rec := waitForRecord(t, p.Env, "tenant", func(m map[string]any) bool {
		pr, _ := m["properties"].(map[string]any)
		return pr["signInSubject"] == "alice@keyward.test" && m["httpStatusCode"] == float64(400)
	})
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "wrong-guess") {
		t.Fatal("the record holds the password")
	}

	// Alice enrolls TOTP: the code is the second step.
	pwd := aliceTok(graphURL)
	e := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods", map[string]any{})
	secret, method := jsonField(e.Body, "secretKey"), jsonField(e.Body, "id")
	code := func() string {
		c, err := totp.GenerateCodeCustom(secret, p.clock.now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if r := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods/"+method+"/confirm", map[string]string{"code": code()}); r.Status != 204 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	p.clock.set(p.clock.now().Add(31 * time.Second))
	r, body := post(t, b, authz, url.Values{"flow": {flow}, "username": {"alice@keyward.test"}, "password": {"Correct horse 1"}})
	m := flowField.FindStringSubmatch(body)
	if r.StatusCode != 200 || !strings.Contains(body, `name="otp"`) || m == nil {
		t.Fatalf("after the password: %d %s", r.StatusCode, body)
	}
	if r, body := post(t, b, authz, url.Values{"flow": {m[1]}, "otp": {"000000"}}); r.StatusCode != 400 || !strings.Contains(body, "not right") {
		t.Fatalf("a wrong code: %d %s", r.StatusCode, body)
	}
	r, _ = post(t, b, authz, url.Values{"flow": {m[1]}, "otp": {code()}})
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != 302 || loc.Host != "localhost:53121" || loc.Query().Get("state") != "xyz" || loc.Query().Get("code") == "" {
		t.Fatalf("after the code: %d %s", r.StatusCode, loc)
	}
	authCode := loc.Query().Get("code")

	redeem := func(code, verifier string) (int, map[string]any) {
		resp, err := p.HTTP.PostForm(token, url.Values{"grant_type": {"authorization_code"}, "client_id": {identity.AzureCLIClientID},
			"code": {code}, "redirect_uri": {"http://localhost:53121/"}, "code_verifier": {verifier},
			"scope": {"https://managedhsm.azure.net/.default offline_access"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, out := redeem(authCode, strings.Repeat("x", 50)); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("a wrong verifier: %d %v", st, out)
	}
	if st, _ := redeem(authCode, verifier); st != 400 {
		t.Fatalf("a code after a failed attempt: %d", st)
	}

	// A fresh sign-in (the password and a new code) and its exchange.
	flow = signInPage(t, b, authz+"?"+q.Encode())
	_, body = post(t, b, authz, url.Values{"flow": {flow}, "username": {"alice@keyward.test"}, "password": {"Correct horse 1"}})
	p.clock.set(p.clock.now().Add(31 * time.Second))
	r, _ = post(t, b, authz, url.Values{"flow": {flowField.FindStringSubmatch(body)[1]}, "otp": {code()}})
	loc, _ = url.Parse(r.Header.Get("Location"))
	st, out := redeem(loc.Query().Get("code"), verifier)
	if st != 200 || out["access_token"] == nil || out["refresh_token"] == nil {
		t.Fatalf("the exchange: %d %v", st, out)
	}
	var claims struct {
		OID string   `json:"oid"`
		AMR []string `json:"amr"`
	}
	part := strings.Split(out["access_token"].(string), ".")[1]
	raw, _ := base64.RawURLEncoding.DecodeString(part)
	json.Unmarshal(raw, &claims)
	if claims.OID != alice || !strings.Contains(strings.Join(claims.AMR, " "), "mfa") {
		t.Fatalf("the token's claims: %+v", claims)
	}
	if st, _ := redeem(loc.Query().Get("code"), verifier); st != 400 {
		t.Fatalf("a code redeemed twice: %d", st)
	}
}

// TestMSALPublicClientSignsIn: MSAL's own public client (as
// InteractiveBrowserCredential uses it) runs the whole flow: its local
// redirect listener, PKCE, the code exchange. A test browser follows its
// sign-in URL, fills in the form and follows the redirect.
func TestMSALPublicClientSignsIn(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	r := env.Graph("POST", "/users", map[string]any{"displayName": "bob", "userPrincipalName": "bob@keyward.test",
		"passwordProfile": map[string]string{"password": "Correct horse 2"}})
	if r.Status != 201 {
		t.Fatalf("creating bob: %d %s", r.Status, r.Body)
	}
	bob := jsonField(r.Body, "id")
	app, err := public.New(identity.AzureCLIClientID, public.WithAuthority(env.Boot.AuthorityHost+env.Boot.TenantID),
		public.WithHTTPClient(env.HTTP), public.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	b := browser(env)
	// MSAL asks for response_mode=form_post: the page holds a form of the
	// code and state that its script posts to MSAL's loopback listener.
	action := regexp.MustCompile(`<form id="response" method="post" action="([^"]+)">`)
	hidden := regexp.MustCompile(`<input type="hidden" name="(code|state)" value="([^"]+)">`)
	browse := func(u string) error {
		go func() {
			flow := signInPage(t, b, u)
			_, page := post(t, b, env.Boot.AuthorityHost+env.Boot.TenantID+"/oauth2/v2.0/authorize",
				url.Values{"flow": {flow}, "username": {"bob@keyward.test"}, "password": {"Correct horse 2"}})
			to := action.FindStringSubmatch(page)
			if to == nil {
				t.Errorf("no response form: %s", page)
				return
			}
			form := url.Values{}
			for _, m := range hidden.FindAllStringSubmatch(page, -1) {
				form.Set(m[1], html.UnescapeString(m[2]))
			}
			back, err := http.PostForm(html.UnescapeString(to[1]), form)
			if err == nil {
				back.Body.Close()
			}
		}()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := app.AcquireTokenInteractive(ctx, []string{"https://managedhsm.azure.net/.default"}, public.WithOpenURL(browse))
	if err != nil {
		t.Fatal(err)
	}
	if res.IDToken.Oid != "" && res.IDToken.Oid != bob {
		t.Fatalf("signed in as %s", res.IDToken.Oid)
	}
	var claims struct {
		OID string `json:"oid"`
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(res.AccessToken, ".")[1])
	json.Unmarshal(raw, &claims)
	if claims.OID != bob {
		t.Fatalf("the access token is %s's", claims.OID)
	}
}

// completeDeviceSignIn is the user's side of a device's sign-in: the code
// page, then the sign-in page, in a browser.
func completeDeviceSignIn(t *testing.T, env *servertest.Env, b *http.Client, userCode, user, password string) {
	t.Helper()
	flow := signInPage(t, b, env.Boot.AuthorityHost+"devicelogin")
	_, page := post(t, b, env.Boot.AuthorityHost+"devicelogin", url.Values{"flow": {flow}, "code": {userCode}})
	m := flowField.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, `name="password"`) {
		t.Fatalf("after the code: %s", page)
	}
	r, done := post(t, b, env.Boot.AuthorityHost+env.Boot.TenantID+"/oauth2/v2.0/authorize",
		url.Values{"flow": {m[1]}, "username": {user}, "password": {password}})
	if r.StatusCode != 200 || !strings.Contains(done, "You are signed in") {
		t.Fatalf("after the password: %d %s", r.StatusCode, done)
	}
}

// TestDeviceCodeSignIn: a device's sign-in (az login --use-device-code):
// the device polls and waits; a wrong code is refused; the user enters the
// code and signs in in a browser; the device's next poll gets tokens, once.
func TestDeviceCodeSignIn(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	if r := env.Graph("POST", "/users", map[string]any{"displayName": "carol", "userPrincipalName": "carol@keyward.test",
		"passwordProfile": map[string]string{"password": "Correct horse 3"}}); r.Status != 201 {
		t.Fatalf("creating carol: %d %s", r.Status, r.Body)
	}
	endpoint := env.Boot.AuthorityHost + env.Boot.TenantID + "/oauth2/v2.0/"
	form := func(u string, v url.Values) (int, map[string]any) {
		resp, err := env.HTTP.PostForm(u, v)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, out := form(endpoint+"devicecode", url.Values{"client_id": {"0f0f0f0f-0000-4000-8000-000000000000"}, "scope": {graphURL + "/.default"}}); st != 400 {
		t.Fatalf("an unknown client: %d %v", st, out)
	}
	st, dc := form(endpoint+"devicecode", url.Values{"client_id": {identity.AzureCLIClientID}, "scope": {graphURL + "/.default offline_access"}})
	if st != 200 || dc["user_code"] == nil || dc["verification_uri"] != env.Boot.AuthorityHost+"devicelogin" ||
		!strings.Contains(dc["message"].(string), dc["user_code"].(string)) {
		t.Fatalf("devicecode: %d %v", st, dc)
	}
	poll := func() (int, map[string]any) {
		return form(endpoint+"token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"client_id": {identity.AzureCLIClientID}, "device_code": {dc["device_code"].(string)}, "scope": {graphURL + "/.default offline_access"}})
	}
	if st, out := poll(); st != 400 || out["error"] != "authorization_pending" {
		t.Fatalf("a poll before the user: %d %v", st, out)
	}
	b := browser(env)
	flow := signInPage(t, b, env.Boot.AuthorityHost+"devicelogin")
	if _, page := post(t, b, env.Boot.AuthorityHost+"devicelogin", url.Values{"flow": {flow}, "code": {"BCDFGHJKL"}}); !strings.Contains(page, "did not work") {
		t.Fatalf("a wrong code: %s", page)
	}
	if r, _ := post(t, browser(env), env.Boot.AuthorityHost+"devicelogin", url.Values{"flow": {flow}, "code": {dc["user_code"].(string)}}); r.StatusCode != 403 {
		t.Fatalf("a code form without the page's cookie: %d", r.StatusCode)
	}
	// Typed as people type it.
	code := dc["user_code"].(string)
	completeDeviceSignIn(t, env, b, strings.ToLower(code[:4])+"-"+code[4:], "carol@keyward.test", "Correct horse 3")
	st, out := poll()
	if st != 200 || out["access_token"] == nil || out["refresh_token"] == nil {
		t.Fatalf("the poll after the sign-in: %d %v", st, out)
	}
	if st, _ := poll(); st != 400 {
		t.Fatalf("a second poll: %d", st)
	}
	// The user code is spent too.
	flow = signInPage(t, b, env.Boot.AuthorityHost+"devicelogin")
	if _, page := post(t, b, env.Boot.AuthorityHost+"devicelogin", url.Values{"flow": {flow}, "code": {code}}); !strings.Contains(page, "did not work") {
		t.Fatalf("a used code: %s", page)
	}
}

// TestMSALDeviceCode: MSAL's public client's device code flow, as
// azidentity.DeviceCodeCredential runs it.
func TestMSALDeviceCode(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	if r := env.Graph("POST", "/users", map[string]any{"displayName": "dave", "userPrincipalName": "dave@keyward.test",
		"passwordProfile": map[string]string{"password": "Correct horse 4"}}); r.Status != 201 {
		t.Fatalf("creating dave: %d %s", r.Status, r.Body)
	}
	app, err := public.New(identity.AzureCLIClientID, public.WithAuthority(env.Boot.AuthorityHost+env.Boot.TenantID),
		public.WithHTTPClient(env.HTTP), public.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dc, err := app.AcquireTokenByDeviceCode(ctx, []string{"https://managedhsm.azure.net/.default"})
	if err != nil {
		t.Fatal(err)
	}
	completeDeviceSignIn(t, env, browser(env), dc.Result.UserCode, "dave@keyward.test", "Correct horse 4")
	res, err := dc.AuthenticationResult(ctx)
	if err != nil || res.AccessToken == "" {
		t.Fatalf("MSAL's device code result: %v", err)
	}
}

// TestParallelCodesHitTheLockout: the code step of a sign-in page, posted
// many times at once with wrong codes (an attacker who has the password),
// gets no more guesses than the lockout allows: the check and the count
// are one step per user, not a race.
func TestParallelCodesHitTheLockout(t *testing.T) {
	t.Parallel()
	p := startPIM(t)
	_, tok := p.user(t, "frank")
	pwd := tok(graphURL)
	e := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods", map[string]any{})
	secret, method := jsonField(e.Body, "secretKey"), jsonField(e.Body, "id")
	c, _ := totp.GenerateCodeCustom(secret, p.clock.now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if r := p.graphAs(pwd, "POST", "/me/authentication/softwareOathMethods/"+method+"/confirm", map[string]string{"code": c}); r.Status != 204 {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	authz := p.Boot.AuthorityHost + p.Boot.TenantID + "/oauth2/v2.0/authorize"
	q := url.Values{"client_id": {identity.AzureCLIClientID}, "response_type": {"code"}, "redirect_uri": {"http://localhost:5000"},
		"scope": {"https://managedhsm.azure.net/.default"}, "code_challenge": {challengeOf(strings.Repeat("v", 43))}, "code_challenge_method": {"S256"}}
	b := browser(p.Env)
	flow := signInPage(t, b, authz+"?"+q.Encode())
	_, body := post(t, b, authz, url.Values{"flow": {flow}, "username": {"frank@keyward.test"}, "password": {"Correct horse 1"}})
	m := flowField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no code step: %s", body)
	}
	const burst = 40
	statuses := make(chan int, burst)
	for i := range burst {
		go func() {
			resp, err := b.PostForm(authz, url.Values{"flow": {m[1]}, "otp": {fmt.Sprintf("%06d", 100000+i)}})
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	checked := 0
	for range burst {
		if <-statuses == 400 { // a wrong code checked; 429 is the lockout
			checked++
		}
	}
	if checked > 5 {
		t.Fatalf("%d wrong codes of %d were checked: the lockout allows 5", checked, burst)
	}
}

// TestRegisteredPublicClient: an application its owner makes a public
// client (Graph's publicClient.redirectUris, isFallbackPublicClient) signs
// users in at its own redirect URIs only, and starts device sign-ins only
// when public-client flows are allowed; the sign-in page may send the code
// to its https origin and no other.
func TestRegisteredPublicClient(t *testing.T) {
	t.Parallel()
	p := startPIM(t)
	_, userTok := p.user(t, "dana")
	app := p.ServicePrincipal("contoso-desktop")
	authz := p.Boot.AuthorityHost + p.Boot.TenantID + "/oauth2/v2.0/authorize"
	verifier := strings.Repeat("d", 50)
	authorize := func(redirect string) *http.Response {
		q := url.Values{"client_id": {app.AppID}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"https://managedhsm.azure.net/.default"},
			"code_challenge": {challengeOf(verifier)}, "code_challenge_method": {"S256"}}
		resp, err := browser(p.Env).Get(authz + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	deviceCode := func() int {
		resp, err := p.HTTP.PostForm(p.Boot.AuthorityHost+p.Boot.TenantID+"/oauth2/v2.0/devicecode",
			url.Values{"client_id": {app.AppID}, "scope": {"https://managedhsm.azure.net/.default"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if r := authorize("http://localhost:5000/cb"); r.StatusCode != 400 {
		t.Fatalf("an application that is no public client: %d", r.StatusCode)
	}
	appPath := "/applications/" + app.AppID
	for _, bad := range []map[string]any{
		{"publicClient": map[string]any{"redirectUris": []string{"http://app.contoso.example/cb"}}},
		{"publicClient": map[string]any{"redirectUris": []string{"javascript:alert(1)"}}},
		{"publicClient": map[string]any{"redirectUris": []string{"https://app.contoso.example/cb#x"}}},
		{"displayName": "renamed"},
	} {
		if r := p.Graph("PATCH", appPath, bad); r.Status != 400 || r.ErrorCode() == "" {
			t.Errorf("PATCH %v: %d %s", bad, r.Status, r.Body)
		}
	}
	set := map[string]any{"publicClient": map[string]any{"redirectUris": []string{"http://localhost/cb", "https://app.contoso.example/signin"}}}
	if r := p.graphAs(userTok(graphURL), "PATCH", appPath, set); r.Status != 403 {
		t.Errorf("a user makes an application a public client: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("PATCH", appPath, set); r.Status != 204 {
		t.Fatalf("PATCH publicClient: %d %s", r.Status, r.Body)
	}
	if r := p.Graph("GET", appPath, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"redirectUris":["http://localhost/cb","https://app.contoso.example/signin"]`) ||
		!strings.Contains(string(r.Body), `"isFallbackPublicClient":false`) {
		t.Errorf("GET the application: %d %s", r.Status, r.Body)
	}
	if r := authorize("http://localhost:5000/cb"); r.StatusCode != 200 || strings.Contains(r.Header.Get("Content-Security-Policy"), "https://") {
		t.Errorf("a loopback redirect: %d %s", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	if r := authorize("https://app.contoso.example/signin"); r.StatusCode != 200 ||
		!strings.Contains(r.Header.Get("Content-Security-Policy"), "form-action 'self' http://localhost:* http://127.0.0.1:* http://[::1]:* https://app.contoso.example;") {
		t.Errorf("the registered https redirect: %d %s", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	for _, bad := range []string{"https://evil.example/signin", "https://app.contoso.example/other", "http://localhost:5000/other"} {
		if r := authorize(bad); r.StatusCode != 400 || r.Header.Get("Location") != "" {
			t.Errorf("an unregistered redirect %s: %d %s", bad, r.StatusCode, r.Header.Get("Location"))
		}
	}
	if st := deviceCode(); st != 400 {
		t.Errorf("a device sign-in without public-client flows: %d", st)
	}
	if r := p.Graph("PATCH", appPath, map[string]any{"isFallbackPublicClient": true}); r.Status != 204 {
		t.Fatalf("allowing public-client flows: %d %s", r.Status, r.Body)
	}
	if st := deviceCode(); st != 200 {
		t.Errorf("a device sign-in with public-client flows: %d", st)
	}
	// No redirect URIs and no flows: no longer a public client.
	if r := p.Graph("PATCH", appPath, map[string]any{"publicClient": map[string]any{"redirectUris": []string{}}, "isFallbackPublicClient": false}); r.Status != 204 {
		t.Fatalf("unregistering: %d %s", r.Status, r.Body)
	}
	if r := authorize("http://localhost:5000/cb"); r.StatusCode != 400 {
		t.Errorf("after unregistering: %d", r.StatusCode)
	}
}
