package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/servertest"
)

// TestLoginWithDeviceCode: `keyward login --use-device-code`, as az's:
// the CLI prints where to enter which code, the user signs in in a
// browser, and the CLI's profile is the user's.
func TestLoginWithDeviceCode(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t)
	b := srv.Boot
	if r := srv.Graph("POST", "/users", map[string]any{"displayName": "erin", "userPrincipalName": "erin@keyward.test",
		"passwordProfile": map[string]string{"password": "Correct horse 5"}}); r.Status != 201 {
		t.Fatalf("creating erin: %d %s", r.Status, r.Body)
	}
	cfg := t.TempDir()
	lines := make(chan string, 8)
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: lineWriter(lines), configDir: cfg},
			[]string{"login", "--server", b.AuthorityHost, "--use-device-code", "--ca-file", b.CAFile, "-o", "none"})
	}()
	var message string
	select {
	case message = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatal("the CLI printed no code")
	}
	m := regexp.MustCompile(`open the page (\S+) and enter the code (\S+) to authenticate`).FindStringSubmatch(message)
	if m == nil {
		t.Fatalf("the message: %q", message)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: srv.HTTP.Transport, Jar: jar}
	field := regexp.MustCompile(`name="flow" value="([^"]+)"`)
	step := func(u string, form url.Values) string {
		var resp *http.Response
		var err error
		if form == nil {
			resp, err = browser.Get(u)
		} else {
			resp, err = browser.PostForm(u, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	page := step(m[1], nil)
	page = step(m[1], url.Values{"flow": {field.FindStringSubmatch(page)[1]}, "code": {m[2]}})
	page = step(b.AuthorityHost+b.TenantID+"/oauth2/v2.0/authorize", url.Values{"flow": {field.FindStringSubmatch(page)[1]},
		"username": {"erin@keyward.test"}, "password": {"Correct horse 5"}})
	if !strings.Contains(page, "You are signed in") {
		t.Fatalf("the browser: %s", page)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("login exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("login did not finish")
	}
	erin := kw{t, cfg}
	if got := erin.ok("account", "show", "--query", "user.name", "-o", "tsv"); got != "erin@keyward.test" {
		t.Fatalf("signed in as %q", got)
	}
}
