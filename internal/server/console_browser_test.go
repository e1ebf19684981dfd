package server_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/keyward/keyward/internal/server"
)

// chromium is Debian's browser, which scripts/test installs; the test
// never downloads one.
const chromium = "/usr/bin/chromium"

// startBrowser starts headless Chromium with the flags this machine's
// closed network needs, and returns a context for its first tab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("Chromium is not installed at %s (scripts/test installs Debian's chromium): %v", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chromium), chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		// The server's certificate is issued by its own test CA.
		chromedp.IgnoreCertErrors,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-dev-shm-usage", true)}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf), chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil { // starts the browser
		t.Fatalf("starting Chromium: %v", err)
	}
	return tab
}

// person is one browser context (its own cookies) signed in as a user.
type person struct {
	t    *testing.T
	s    *consoleStory
	ctx  context.Context
	name string
}

// newPerson opens a browser context of its own in the browser.
func (s *consoleStory) newPerson(t *testing.T, browser context.Context, name string) *person {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The tab opens on the first action: with ctx itself, not a context
	// derived with a timeout, whose end would take the tab with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening %s's browser context: %v", name, err)
	}
	return &person{t: t, s: s, ctx: ctx, name: name}
}

func (p *person) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(p.ctx, chromedp.Location())
		main, _ := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		p.t.Fatalf("%s: %s: %v\nat %s:\n%s", p.name, what, err, loc, main)
	}
}

// html returns the page's main element.
func (p *person) html() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	h, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
	if err != nil {
		p.t.Fatalf("%s: reading the page: %v", p.name, err)
	}
	return h
}

func (p *person) open(page string) string {
	p.t.Helper()
	p.do("opening "+page, chromedp.Navigate(p.s.consoleURL()+page), chromedp.WaitVisible(chromedp.CSS("main h1")))
	return p.html()
}

// signIn signs in through the token service's page: user name and
// password, then the authenticator's code when the user has one.
func (p *person) signIn() {
	p.t.Helper()
	p.do("opening the console", chromedp.Navigate(p.s.consoleURL()), chromedp.WaitVisible(chromedp.CSS("#username")))
	p.shot("signin")
	p.do("typing the password", chromedp.SendKeys(chromedp.CSS("#username"), p.name+"@keyward.test"),
		chromedp.SendKeys(chromedp.CSS("#password"), consolePassword), chromedp.Click(chromedp.CSS("button[type=submit]")))
	if p.s.secrets[p.name] != "" {
		p.do("waiting for the code step", chromedp.WaitVisible(chromedp.CSS("#otp")))
		p.do("typing the code", chromedp.SendKeys(chromedp.CSS("#otp"), p.s.code(p.t, p.name)), chromedp.Click(chromedp.CSS("button[type=submit]")))
	}
	p.do("arriving at My access", chromedp.WaitVisible(chromedp.CSS("nav")))
	if h := p.html(); !strings.Contains(h, p.name+"@keyward.test") || !strings.Contains(h, "<h1>My access</h1>") {
		p.t.Fatalf("%s after sign-in: %s", p.name, h)
	}
}

// shot takes a screenshot of the page, checks it is a PNG, and keeps it
// in docs/console when KEYWARD_SCREENSHOTS names that directory.
func (p *person) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// A second browser context's tab is in the background, where no
	// frame is drawn: bring it to the front first.
	front := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.BringToFront, cdp.Empty{})
		return err
	})
	if err := chromedp.Do(ctx, front); err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() < 800 {
		p.t.Fatalf("screenshot %s is no page-sized PNG: %v", name, err)
	}
	if dir := os.Getenv("KEYWARD_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

// TestConsoleInABrowser walks the story in headless Chromium: alice signs
// in with her password and code, sees only her eligible access, asks to
// activate the "HSM Admins" membership with a justification; the request
// shows as pending; bob, in a second browser context, approves it; alice
// then sees the HSM's role assignments, and deactivates. erin, an
// auditor, sees the keys with their expiry dates, the role assignments
// and the audit search, has no Activate or Approve buttons, and a sign
// she is refused shows in the audit view within seconds.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	s := startConsoleStory(t)
	// bob also administers PIM, so that the settings page has something to show.
	if r := s.Graph("POST", "/roleManagement/directory/roleAssignments", map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleAssignment",
		"roleDefinitionId": "e8611ab8-c189-46e8-94e1-60213ab1f814", "principalId": s.bob, "directoryScopeId": "/"}); r.Status != 201 {
		t.Fatalf("bob as Privileged Role Administrator: %d %s", r.Status, r.Body)
	}
	browser := startBrowser(t)

	alice := s.newPerson(t, browser, "alice")
	alice.signIn()
	h := alice.html()
	if !strings.Contains(h, "HSM Admins") || strings.Contains(h, "App Auditors") || strings.Count(h, `name="activate"`) != 1 {
		t.Fatalf("alice's eligible access: %s", h)
	}
	if h := alice.open("hsms/dev"); !strings.Contains(h, "You can see no HSM named dev") || strings.Contains(h, `id="assignments"`) {
		t.Fatalf("alice reads the HSM's role assignments before activation: %s", h)
	}
	alice.open("access")
	alice.do("asking to activate", chromedp.SendKeys(chromedp.CSS("form.activate input[name=justification]"), "Rotate the payments key (CHG-1042)"),
		chromedp.SendKeys(chromedp.CSS("form.activate input[name=ticket]"), "CHG-1042"),
		chromedp.Click(chromedp.CSS("form.activate button[name=activate]")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	h = alice.html()
	if !strings.Contains(h, "waits for approval") || !strings.Contains(h, "Request pending approval") || !strings.Contains(h, "PendingApproval") {
		t.Fatalf("alice's pending request: %s", h)
	}
	alice.shot("access")

	bob := s.newPerson(t, browser, "bob")
	bob.signIn()
	h = bob.open("approvals")
	if !strings.Contains(h, "alice@keyward.test") || !strings.Contains(h, "Rotate the payments key (CHG-1042)") || !strings.Contains(h, "1 hour") {
		t.Fatalf("bob's approvals: %s", h)
	}
	bob.shot("approvals")
	bob.do("approving", chromedp.SendKeys(chromedp.CSS("form.decide input[name=justification]"), "Change CHG-1042 is approved"),
		chromedp.Click(chromedp.CSS(`form.decide button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if h := bob.html(); !strings.Contains(h, "Approved.") || !strings.Contains(h, "No request waits") {
		t.Fatalf("after bob's approval: %s", h)
	}
	h = bob.open("settings")
	if !strings.Contains(h, "HSM Admins") || !strings.Contains(h, "4 hours") || !strings.Contains(h, "bob@keyward.test") || !strings.Contains(h, `name="save"`) {
		t.Fatalf("bob's PIM settings: %s", h)
	}
	// bob, a Privileged Role Administrator, shortens the maximum duration
	// and asks for a ticket too.
	bob.do("changing the policy", chromedp.SetValue(chromedp.CSS("form.policy select[name=hours]"), "2"),
		chromedp.Click(chromedp.CSS("form.policy input[name=ticket]")), chromedp.Click(chromedp.CSS("form.policy button[name=save]")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if h := bob.html(); !strings.Contains(h, "The policy is changed.") || !strings.Contains(h, "2 hours") || strings.Count(h, ">required<") != 4 {
		t.Fatalf("after bob's change: %s", h)
	}
	bob.shot("settings")

	h = alice.open("access")
	if !strings.Contains(h, `name="deactivate"`) || !strings.Contains(h, "HSM Admins") {
		t.Fatalf("alice's active membership: %s", h)
	}
	h = alice.open("hsms/dev")
	if !strings.Contains(h, `id="assignments"`) || !strings.Contains(h, "Managed HSM Administrator") || !strings.Contains(h, "HSM Admins") ||
		!strings.Contains(h, "alice@keyward.test <span class=\"activated\">activated until") {
		t.Fatalf("alice's view of the HSM once active: %s", h)
	}
	alice.open("access")
	alice.do("deactivating", chromedp.Click(chromedp.CSS("button[name=deactivate]")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if h := alice.html(); !strings.Contains(h, "Deactivated.") || strings.Contains(h, `name="deactivate"`) {
		t.Fatalf("after deactivation: %s", h)
	}
	if isMember(t, s.pimEnv, s.group, s.alice) {
		t.Fatal("alice is still a member after deactivating")
	}

	erin := s.newPerson(t, browser, "erin")
	erin.signIn()
	for _, page := range []string{"access", "approvals"} {
		if h := erin.open(page); strings.Contains(h, `name="activate"`) || strings.Contains(h, `value="approve"`) {
			t.Fatalf("erin's %s page has Activate or Approve: %s", page, h)
		}
	}
	h = erin.open("hsms")
	if !strings.Contains(h, "hsms/dev") {
		t.Fatalf("erin's HSMs: %s", h)
	}
	erin.shot("hsms")
	h = erin.open("hsms/dev")
	for _, want := range []string{"payments-signing", "storage-cmk", `class="soon"`, "within 30 days", time.Now().Add(200 * 24 * time.Hour).UTC().Format("2006-01-02"),
		"Managed HSM Crypto Auditor", "App Auditors", "Managed HSM Administrator"} {
		if !strings.Contains(h, want) {
			t.Fatalf("erin's view of the HSM lacks %q: %s", want, h)
		}
	}
	erin.shot("hsm")

	// erin tries to sign: refused, and the audit view shows it.
	refused := s.Do("POST", "/keys/payments-signing/sign?api-version=7.4", s.tokens["erin"](server.ManagedHSMResource),
		map[string]string{"alg": "ES256", "value": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"})
	if refused.Status != 403 {
		t.Fatalf("erin signs: %d %s", refused.Status, refused.Body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h = erin.open("audit?result=refused&operation=KeySign")
		if strings.Contains(h, "erin@keyward.test") && strings.Contains(h, "403 refused") && strings.Contains(h, "payments-signing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused sign is not in the audit view: %s", h)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(h, "the chain holds") || !strings.Contains(h, "<rect") {
		t.Fatalf("the audit view's chain check or chart: %s", h)
	}
	erin.open("audit")
	erin.shot("audit")
}
