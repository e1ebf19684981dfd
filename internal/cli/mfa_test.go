package cli

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/servertest"
)

// amrOf returns the amr claim of the token that get-access-token prints.
func amrOf(t *testing.T, k kw, args ...string) []string {
	t.Helper()
	var out struct {
		AccessToken, ExpiresOn, Tenant, TokenType string
	}
	jsonDecode(t, k.ok(append([]string{"account", "get-access-token"}, args...)...), &out)
	if out.TokenType != "Bearer" || out.Tenant == "" || out.ExpiresOn == "" {
		t.Fatalf("get-access-token: %+v", out)
	}
	parts := strings.Split(out.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q", out.AccessToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AMR []string `json:"amr"`
	}
	jsonDecode(t, string(b), &c)
	return c.AMR
}

// TestCLIMFA is issue 13's acceptance: against a live server a user signs
// in with a password only (amr without mfa), enrolls and confirms TOTP,
// signs in with a code (amr with mfa); a replayed or wrong code and a
// wrong password are refused; the profile holds no password; logout and
// an MFA reset revoke the refresh token; no secret reaches the log.
func TestCLIMFA(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	const password = "Correct-Horse-Battery-13"
	admin.ok("ad", "user", "create", "--display-name", "Carol", "--user-principal-name", "carol@contoso.test", "--password", password)

	user := kw{t, t.TempDir()}
	login := func(k kw, pw, code string) (string, int) {
		args := []string{"login", "--server", b.AuthorityHost, "-u", "carol@contoso.test", "-p", pw, "--tenant", b.TenantID, "--ca-file", b.CAFile}
		if code != "" {
			args = append(args, "--otp", code)
		}
		_, errs, rc := k.run("", args...)
		return errs, rc
	}
	if errs, rc := login(user, password, ""); rc != 0 {
		t.Fatalf("password login: %s", errs)
	}
	profileText := func(k kw) string {
		data, err := os.ReadFile(filepath.Join(k.cfg, profileFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	checkProfile := func(k kw) string {
		text := profileText(k)
		var p map[string]any
		jsonDecode(t, text, &p)
		if strings.Contains(text, password) || p["secret"] != nil || p["refreshToken"] == nil {
			t.Fatalf("the profile keeps a password or no refresh token: %s", text)
		}
		return p["refreshToken"].(string)
	}
	checkProfile(user)
	if amr := amrOf(t, user, "--resource", "https://graph.microsoft.com"); !slices.Equal(amr, []string{"pwd"}) {
		t.Fatalf("password-only amr = %v", amr)
	}

	// Enroll and confirm an authenticator.
	var enrolled struct{ ID, Secret, OtpauthURI string }
	jsonDecode(t, user.ok("account", "mfa", "enroll"), &enrolled)
	if enrolled.Secret == "" || !strings.HasPrefix(enrolled.OtpauthURI, "otpauth://totp/") {
		t.Fatalf("enroll: %+v", enrolled)
	}
	code := func(at time.Time) string {
		c, err := totp.GenerateCodeCustom(enrolled.Secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Before confirmation the authenticator is no second factor.
	if _, rc := login(kw{t, t.TempDir()}, password, code(time.Now())); rc == 0 {
		t.Fatal("an unconfirmed authenticator signed in")
	}
	if _, errs, rc := user.run("", "account", "mfa", "confirm", "--code", "12345"); rc == 0 {
		t.Fatalf("a malformed code confirmed: %s", errs)
	}
	user.ok("account", "mfa", "confirm", "--code", code(time.Now()))
	// A password-only session cannot replace a confirmed authenticator.
	if _, _, rc := user.run("", "account", "mfa", "enroll"); rc == 0 {
		t.Fatal("a confirmed authenticator was replaced")
	}

	// Sign in with a code: the next step's (accepted for clock drift, and
	// after the confirming one).
	next := code(time.Now().Add(30 * time.Second))
	mfaUser := kw{t, t.TempDir()}
	if errs, rc := login(mfaUser, password, next); rc != 0 {
		t.Fatalf("login with a code: %s", errs)
	}
	refresh := checkProfile(mfaUser)
	for range 2 { // each get-access-token is a refresh: the amr stays
		if amr := amrOf(t, mfaUser, "--scope", "https://managedhsm.azure.net/.default"); !slices.Contains(amr, "mfa") || !slices.Contains(amr, "otp") || !slices.Contains(amr, "pwd") {
			t.Fatalf("MFA amr = %v", amr)
		}
	}
	// The password-only session stays password-only.
	if amr := amrOf(t, user); slices.Contains(amr, "mfa") {
		t.Fatalf("a refresh of a password-only sign-in gained mfa: %v", amr)
	}

	// A replayed code, a wrong code and a wrong password are refused.
	if errs, rc := login(kw{t, t.TempDir()}, password, next); rc == 0 || !strings.Contains(errs, "AADSTS500121") {
		t.Fatalf("a replayed code: %d %s", rc, errs)
	}
	wrong := "000000"
	now := time.Now()
	for slices.Contains([]string{code(now.Add(-60 * time.Second)), code(now.Add(-30 * time.Second)), code(now), code(now.Add(30 * time.Second)), code(now.Add(60 * time.Second))}, wrong) {
		wrong = wrong[1:] + "1"
	}
	if errs, rc := login(kw{t, t.TempDir()}, password, wrong); rc == 0 || !strings.Contains(errs, "AADSTS500121") {
		t.Fatalf("a wrong code: %d %s", rc, errs)
	}
	if _, rc := login(kw{t, t.TempDir()}, "Wrong-Password-13", code(now.Add(60*time.Second))); rc == 0 {
		t.Fatal("a wrong password signed in")
	}

	// Logout revokes the refresh token at the server: a copy of the
	// profile no longer works.
	stolen := kw{t, t.TempDir()}
	writeFile(t, filepath.Join(stolen.cfg, profileFile), profileText(mfaUser))
	amrOf(t, stolen)
	mfaUser.ok("logout")
	if _, errs, rc := stolen.run("", "account", "get-access-token"); rc == 0 || !strings.Contains(errs, "invalid_grant") {
		t.Fatalf("a logged-out refresh token still works: %d %s", rc, errs)
	}

	// An administrator's MFA reset revokes the user's other sessions too.
	if _, _, rc := user.run("", "ad", "user", "mfa", "reset", "--id", "carol@contoso.test"); rc == 0 {
		t.Fatal("a user reset MFA without Global Administrator")
	}
	admin.ok("ad", "user", "mfa", "reset", "--id", "carol@contoso.test")
	if _, errs, rc := user.run("", "account", "get-access-token"); rc == 0 || !strings.Contains(errs, "invalid_grant") {
		t.Fatalf("a refresh token outlived an MFA reset: %d %s", rc, errs)
	}
	if _, rc := login(kw{t, t.TempDir()}, password, code(time.Now().Add(60*time.Second))); rc == 0 {
		t.Fatal("a reset authenticator still signs in")
	}

	// The user's deletion revokes the rest.
	again := kw{t, t.TempDir()}
	if errs, rc := login(again, password, ""); rc != 0 {
		t.Fatalf("login after reset: %s", errs)
	}
	admin.ok("ad", "user", "delete", "--id", "carol@contoso.test")
	if _, _, rc := again.run("", "account", "get-access-token"); rc == 0 {
		t.Fatal("a refresh token outlived its user")
	}

	logs := env.Logs()
	for _, s := range []string{password, enrolled.Secret, refresh, next, checkProfile(again)} {
		if strings.Contains(logs, s) {
			t.Fatalf("the server log holds a secret %q", s[:4])
		}
	}
}
