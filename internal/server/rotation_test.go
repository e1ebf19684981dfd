package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *settableClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestRotationAfterDowntime creates a key whose policy rotates it 30 days
// after creation, stops the server over that time, and finds exactly one
// new version once it runs again, announced to the webhook and audited.
func TestRotationAfterDowntime(t *testing.T) {
	clock := &settableClock{t: time.Now()}
	var mu sync.Mutex
	var got []events.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e events.Event
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer hook.Close()
	configure := func(c *server.Config) {
		c.Clock, c.RotationInterval, c.EventWebhooks = clock.now, 50*time.Millisecond, []string{hook.URL}
	}
	dir := t.TempDir()
	a := servertest.StartWith(t, dir, configure)
	_, err := a.Keys.CreateKey(ctx, "rolling", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	_, err = a.Keys.UpdateKeyRotationPolicy(ctx, "rolling", azkeys.KeyRotationPolicy{
		Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P90D")},
		LifetimeActions: []*azkeys.LifetimeAction{{Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
			Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P30D")}}}}, nil)
	must(t, err)
	clock.set(clock.now().AddDate(0, 0, 29))
	time.Sleep(200 * time.Millisecond) // several scheduler rounds: not yet due
	versions := func(env *servertest.Env) int {
		n := 0
		for pg := env.Keys.NewListKeyPropertiesVersionsPager("rolling", nil); pg.More(); {
			page, err := pg.NextPage(ctx)
			must(t, err)
			n += len(page.Value)
		}
		return n
	}
	if n := versions(a); n != 1 {
		t.Fatalf("day 29: %d versions", n)
	}
	a.Stop()

	clock.set(clock.now().AddDate(0, 0, 45)) // down over day 30, and day 60
	b := servertest.StartWith(t, dir, configure)
	deadline := time.Now().Add(10 * time.Second)
	for versions(b) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no rotation after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // more rounds: still once
	if n := versions(b); n != 2 {
		t.Fatalf("%d versions after catching up, want 2", n)
	}
	latest, err := b.Keys.GetKey(ctx, "rolling", "", nil)
	must(t, err)
	if latest.Attributes.Expires == nil || latest.Attributes.Expires.Sub(clock.now()) < 89*24*time.Hour {
		t.Fatalf("the new version expires %v", latest.Attributes.Expires)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	// The creation's event, then the rotation's: the key service publishes
	// every new version, whoever made it.
	if len(got) != 2 || got[1].Type != events.KeyNewVersionCreated || got[1].Subject != "rolling" || got[1].Data.Version != latest.Key.KID.Version() {
		t.Fatalf("events = %+v", got)
	}
	records := readAudit(t, b, "dev")
	found := false
	for _, e := range records {
		if e.OperationName == "KeyRotate" && e.ClientInfo == "keyward rotation scheduler" && e.Properties.Key == "rolling" {
			found = true
		}
	}
	if !found {
		t.Fatal("the scheduled rotation is not audited")
	}
}

// TestRotateThroughAPIPublishes: a rotation asked for through the data
// plane (azkeys) is announced to the webhook like a scheduled one, after
// the creation's own event.
func TestRotateThroughAPIPublishes(t *testing.T) {
	var mu sync.Mutex
	var got []events.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e events.Event
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer hook.Close()
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.EventWebhooks = []string{hook.URL} })
	created, err := env.Keys.CreateKey(ctx, "manual", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	rotated, err := env.Keys.RotateKey(ctx, "manual", nil)
	must(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{created.Key.KID.Version(), rotated.Key.KID.Version()}
	if len(got) != 2 {
		t.Fatalf("events = %+v, want the creation's and the rotation's", got)
	}
	for i, e := range got {
		if e.Type != events.KeyNewVersionCreated || e.Subject != "manual" || e.Data.Version != want[i] || e.Data.VaultName != "dev" {
			t.Fatalf("event %d = %+v, want KeyNewVersionCreated of version %s", i, e, want[i])
		}
	}
}
