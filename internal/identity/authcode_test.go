package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func pkce(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64url.EncodeToString(sum[:])
}

// TestAuthCodes: a code is redeemed once, by the client and redirect URI
// it was given for, with the verifier of its challenge, before it
// expires; any failed attempt spends it.
func TestAuthCodes(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	user, err := dir.CreateUser(ctx, "Alice", "alice@contoso.example", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	verifier := strings.Repeat("v", 43)
	issue := func() string {
		t.Helper()
		code, err := dir.IssueAuthCode(ctx, AuthCode{ClientID: AzureCLIClientID, RedirectURI: "http://localhost:5000",
			Challenge: pkce(verifier), PrincipalID: user.ID, AMR: []string{"pwd"}})
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	code := issue()
	p, got, err := dir.RedeemAuthCode(ctx, code, strings.ToUpper(AzureCLIClientID), "http://localhost:5000", verifier)
	if err != nil || p.ID != user.ID || got.AMR[0] != "pwd" {
		t.Fatalf("redeem: %v %+v", err, got)
	}
	if _, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5000", verifier); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("a code redeemed twice: %v", err)
	}
	for name, try := range map[string]func(code string) error{
		"a wrong verifier": func(code string) error {
			_, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5000", strings.Repeat("w", 43))
			return err
		},
		"another client": func(code string) error {
			_, _, err := dir.RedeemAuthCode(ctx, code, KeywardCLIClientID, "http://localhost:5000", verifier)
			return err
		},
		"another redirect URI": func(code string) error {
			_, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5001", verifier)
			return err
		},
		"a short verifier": func(code string) error {
			_, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5000", "")
			return err
		},
		"an expired code": func(code string) error {
			c.t = c.t.Add(AuthCodeLifetime + time.Second)
			defer func() { c.t = c.t.Add(-AuthCodeLifetime - time.Second) }()
			_, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5000", verifier)
			return err
		},
		"a made-up code": func(string) error {
			_, _, err := dir.RedeemAuthCode(ctx, authCodePrefix+"AAAA", AzureCLIClientID, "http://localhost:5000", verifier)
			return err
		},
	} {
		code := issue()
		if err := try(code); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("%s: %v", name, err)
		}
		if name == "a made-up code" {
			continue
		}
		// Spent by the failed attempt: the right request fails too.
		if _, _, err := dir.RedeemAuthCode(ctx, code, AzureCLIClientID, "http://localhost:5000", verifier); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("%s: the code still worked after a failed attempt: %v", name, err)
		}
	}
}

// TestAuthCodesAreBoundedPerUser: a sign-in page posted again and again
// cannot fill the store: a user holds at most maxLiveAuthCodes unredeemed
// codes, and those that expired make room.
func TestAuthCodesAreBoundedPerUser(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	issue := func(user string) error {
		_, err := dir.IssueAuthCode(ctx, AuthCode{ClientID: AzureCLIClientID, RedirectURI: "http://localhost", Challenge: "x", PrincipalID: user})
		return err
	}
	for range maxLiveAuthCodes {
		if err := issue("u1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := issue("u1"); !errors.Is(err, ErrTooManyAuthCodes) {
		t.Fatalf("one code too many: %v", err)
	}
	if err := issue("u2"); err != nil {
		t.Fatalf("another user: %v", err)
	}
	c.t = c.t.Add(AuthCodeLifetime + time.Second)
	if err := issue("u1"); err != nil {
		t.Fatalf("after the codes expired: %v", err)
	}
}

func TestPublicClients(t *testing.T) {
	_, d, _, _ := newTestService(t)
	for _, ok := range []string{"http://localhost", "http://localhost:53121", "http://127.0.0.1:8400/", "http://localhost:1234/?x=1"} {
		if _, err := d.PublicClientFor(context.Background(), AzureCLIClientID, ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "https://evil.example", "http://localhost.evil.example:80", "http://evil@localhost:80",
		"http://localhost:80/other", "http://localhost#frag", "javascript:alert(1)", "http://10.0.0.1"} {
		if _, err := d.PublicClientFor(context.Background(), AzureCLIClientID, bad); !errors.Is(err, ErrRedirectURI) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
	if _, err := d.PublicClientFor(context.Background(), "not-a-client", "http://localhost"); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("an unknown client: %v", err)
	}
}

// TestFlows: a sealed flow opens as it was sealed, and not altered, under
// another pepper, or late.
func TestFlows(t *testing.T) {
	_, dir, c, _ := newTestService(t)
	type state struct{ A string }
	s, err := dir.SealFlow(state{"x"})
	if err != nil {
		t.Fatal(err)
	}
	var got state
	if err := dir.OpenFlow(s, &got); err != nil || got.A != "x" {
		t.Fatalf("open: %v %+v", err, got)
	}
	b := []byte(s)
	b[5] ^= 1 // still base64, another payload
	altered := string(b)
	for name, bad := range map[string]string{"altered": altered, "no mac": strings.Split(s, ".")[0], "empty": ""} {
		if err := dir.OpenFlow(bad, &got); !errors.Is(err, ErrFlow) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c.t = c.t.Add(flowLifetime + time.Second)
	if err := dir.OpenFlow(s, &got); !errors.Is(err, ErrFlow) {
		t.Errorf("late: %v", err)
	}
}

// TestDeviceCodes: a device's sign-in is pending until approved, then
// redeemed once, by its client, before it expires; its user code works
// once, typed in any case and with dashes.
func TestDeviceCodes(t *testing.T) {
	ctx := context.Background()
	_, dir, c, _ := newTestService(t)
	user, err := dir.CreateUser(ctx, "Alice", "alice@contoso.example", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	device, dc, err := dir.StartDeviceCode(ctx, AzureCLIClientID, "s")
	if err != nil || len(dc.UserCode) != userCodeLength || strings.Trim(dc.UserCode, userCodeLetters) != "" {
		t.Fatalf("start: %v %+v", err, dc)
	}
	if _, _, err := dir.RedeemDeviceCode(ctx, device, AzureCLIClientID); !errors.Is(err, ErrAuthorizationPending) {
		t.Fatalf("before approval: %v", err)
	}
	if _, _, err := dir.RedeemDeviceCode(ctx, device, KeywardCLIClientID); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("another client: %v", err)
	}
	typed := strings.ToLower(dc.UserCode[:3]) + "-" + dc.UserCode[3:]
	if _, err := dir.PendingDeviceCode(ctx, typed); err != nil {
		t.Fatal(err)
	}
	if err := dir.ApproveDeviceCode(ctx, typed, user.ID, []string{"pwd"}); err != nil {
		t.Fatal(err)
	}
	if err := dir.ApproveDeviceCode(ctx, dc.UserCode, "someone-else", []string{"pwd"}); !errors.Is(err, ErrUnknownUserCode) {
		t.Fatalf("a second approval: %v", err)
	}
	p, got, err := dir.RedeemDeviceCode(ctx, device, AzureCLIClientID)
	if err != nil || p.ID != user.ID || got.AMR[0] != "pwd" {
		t.Fatalf("redeem: %v", err)
	}
	if _, _, err := dir.RedeemDeviceCode(ctx, device, AzureCLIClientID); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("a second redeem: %v", err)
	}
	late, dc2, _ := dir.StartDeviceCode(ctx, AzureCLIClientID, "s")
	c.t = c.t.Add(DeviceCodeLifetime)
	if _, _, err := dir.RedeemDeviceCode(ctx, late, AzureCLIClientID); !errors.Is(err, ErrDeviceCodeExpired) {
		t.Fatalf("an expired code: %v", err)
	}
	if err := dir.ApproveDeviceCode(ctx, dc2.UserCode, user.ID, nil); !errors.Is(err, ErrUnknownUserCode) {
		t.Fatalf("approving an expired code: %v", err)
	}
}

func TestRegisteredPublicClient(t *testing.T) {
	_, d, _, _ := newTestService(t)
	const console = "https://keyward.example:8443/console/signin"
	if _, err := d.PublicClientFor(context.Background(), KeywardConsoleClientID, console); !errors.Is(err, ErrUnknownClient) {
		t.Fatalf("the console before it is registered: %v", err)
	}
	d.RegisterPublicClient(PublicClient{ID: KeywardConsoleClientID, Name: "Keyward console", RedirectURIs: []string{console}})
	if _, err := d.PublicClientFor(context.Background(), KeywardConsoleClientID, console); err != nil {
		t.Fatalf("the console's own redirect URI: %v", err)
	}
	for _, bad := range []string{"https://keyward.example:8443/console/signin/x", "https://evil.example/console/signin",
		"http://keyward.example:8443/console/signin", "http://localhost:5000", "https://keyward.example:8443/console/signin?x=1"} {
		if _, err := d.PublicClientFor(context.Background(), KeywardConsoleClientID, bad); !errors.Is(err, ErrRedirectURI) {
			t.Errorf("%q accepted for the console: %v", bad, err)
		}
	}
	if c, _ := d.PublicClientByID(context.Background(), KeywardConsoleClientID); c.DeviceCode {
		t.Error("the console may start device sign-ins")
	}
}
