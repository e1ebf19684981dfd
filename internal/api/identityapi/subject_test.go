package identityapi

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestSharedClientIDsAreNotLockedOut: the grants of public clients (codes,
// refresh tokens, device codes) carry a client id every user shares. A
// stranger's bogus codes must not count against it, or anyone could lock
// every az and keyward user out of /token: only the address is counted.
func TestSharedClientIDsAreNotLockedOut(t *testing.T) {
	for grant, want := range map[string]string{
		"authorization_code": "", "refresh_token": "", "urn:ietf:params:oauth:grant-type:device_code": "", "device_code": "",
		"client_credentials": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "password": "alice@contoso.example",
	} {
		form := url.Values{"grant_type": {grant}, "client_id": {"04b07795-8ddb-461a-bbee-02f9e1bf7b46"}, "username": {"alice@contoso.example"}}
		r := httptest.NewRequest("POST", "/t/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.ParseForm()
		if got := subjectOf(r); got != want {
			t.Errorf("%s: the lockout counts against %q, want %q", grant, got, want)
		}
	}
}
