package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// balancer is a round-robin TCP load balancer, as HAProxy in TCP mode:
// each new connection goes to the next backend that accepts it.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
}

func startBalancer(t *testing.T, backends []string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.proxy(c)
		}
	}()
	return b
}

func (b *balancer) proxy(c net.Conn) {
	defer c.Close()
	start := b.next.Add(1)
	for i := range b.backends {
		addr := b.backends[(int(start)+i)%len(b.backends)]
		s, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			continue // a dead node: the next one
		}
		defer s.Close()
		done := make(chan struct{}, 2)
		go func() { io.Copy(s, c); done <- struct{}{} }()
		go func() { io.Copy(c, s); done <- struct{}{} }()
		<-done
		return
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cluster is three nodes (child processes) on one PostgreSQL and one seal
// file, behind a balancer.
type cluster struct {
	t     *testing.T
	pg    *testenv.Postgres
	lb    *balancer
	dirs  []string
	addrs []string
	names []string
	args  [][]string
	nodes []*child
	// envs reach node i directly; lb reaches the balancer.
	envs []*servertest.Env
	lb1  *servertest.Env
}

func startCluster(t *testing.T) *cluster {
	c := &cluster{t: t, pg: testenv.StartOwnPostgres(t)}
	seal := filepath.Join(t.TempDir(), "seal.key")
	for i := range 3 {
		c.dirs = append(c.dirs, t.TempDir())
		c.addrs = append(c.addrs, freeAddr(t))
		c.names = append(c.names, fmt.Sprintf("node%d", i+1))
	}
	c.lb = startBalancer(t, c.addrs)
	public := "https://" + c.lb.ln.Addr().String()
	for i := range 3 {
		c.args = append(c.args, []string{"--database", c.pg.URL(), "--seal-key-file", seal, "--public-url", public,
			"--listen", c.addrs[i], "--node-name", c.names[i], "--rotation-interval", "1s"})
	}
	c.nodes = make([]*child, 3)
	c.envs = make([]*servertest.Env, 3)
	// All three start at once on the empty database, with the same flags:
	// one bootstraps, the others join.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.nodes[i] = startChild(t, c.dirs[i], c.args[i]...) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range 3 {
		c.attach(i)
	}
	boot := c.nodes[0].boot
	c.lb1 = servertest.Attach(t, boot)
	return c
}

// start starts node i (again) and attaches a client to it.
func (c *cluster) start(i int) {
	c.nodes[i] = startChild(c.t, c.dirs[i], c.args[i]...)
	c.attach(i)
}

// attach makes envs[i] reach node i at its own address (under the public
// name), with its own bootstrap secret.
func (c *cluster) attach(i int) {
	c.envs[i] = servertest.AttachVia(c.t, c.nodes[i].boot, c.addrs[i])
}

func (c *cluster) kill(i int) {
	c.nodes[i].cmd.Process.Kill()
	c.nodes[i].cmd.Wait()
}

// eventually polls ok every 20 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, ok func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	if err != nil {
		return -1
	}
	return 200
}

// TestThreeNodeCluster runs three nodes on one PostgreSQL behind a
// round-robin balancer: keys, tokens and role changes cross nodes (within
// a second), work that must happen once happens once, each node audits
// what it served, a node killed under load loses nothing acknowledged and
// rejoins, and a database outage answers 503 and heals by itself.
func TestThreeNodeCluster(t *testing.T) {
	c := startCluster(t)
	n1, n2, n3 := c.envs[0], c.envs[1], c.envs[2]
	ec := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}
	digest := sha256.Sum256([]byte("cluster"))
	sign := func(kc *azkeys.Client, name string) error {
		_, err := kc.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
		return err
	}

	// Every node's certificate chains to the one cluster CA.
	ca, err := os.ReadFile(c.nodes[0].boot.CAFile)
	must(t, err)
	for i := 1; i < 3; i++ {
		other, err := os.ReadFile(c.nodes[i].boot.CAFile)
		if must(t, err); !bytes.Equal(ca, other) {
			t.Fatalf("node %d has a CA of its own", i+1)
		}
	}

	t.Run("a key created through node 1 signs through nodes 2 and 3", func(t *testing.T) {
		_, err := n1.Keys.CreateKey(ctx, "shared", ec, nil)
		must(t, err)
		must(t, sign(n2.Keys, "shared"))
		must(t, sign(n3.Keys, "shared"))
	})

	t.Run("a token from node 1 works at node 3", func(t *testing.T) {
		tok := n1.AdminToken("https://managedhsm.azure.net")
		if r := n3.Do("GET", "/keys/shared?api-version=7.6", tok, nil); r.Status != 200 {
			t.Fatalf("node 1's token at node 3: %d %s", r.Status, r.Body)
		}
	})

	t.Run("a role assignment deleted through node 2 stops nodes 3 and 1 within a second", func(t *testing.T) {
		sp := n1.ServicePrincipal("cluster-app")
		on1, on3 := n1.KeysClient(n1.Credential(sp.AppID, sp.Secret)), n3.KeysClient(n3.Credential(sp.AppID, sp.Secret))
		name := n1.Assign(sp.ObjectID, rbac.CryptoUserID, "/keys")
		eventually(t, time.Second, "signing through node 3 after the assignment", func() error { return sign(on3, "shared") })
		must(t, sign(on1, "shared"))
		tok := n2.AdminToken("https://managedhsm.azure.net")
		if r := n2.Do("DELETE", "/keys/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=7.6", tok, nil); r.Status != 200 {
			t.Fatalf("deleting the assignment through node 2: %d %s", r.Status, r.Body)
		}
		for i, kc := range []*azkeys.Client{on3, on1} {
			eventually(t, time.Second, fmt.Sprintf("refusal %d after the deletion", i), func() error {
				if st := status(sign(kc, "shared")); st != 403 {
					return fmt.Errorf("status %d", st)
				}
				return nil
			})
		}
	})

	t.Run("a group member removed through node 3 loses access on node 1 within a second", func(t *testing.T) {
		sp := n1.ServicePrincipal("cluster-member")
		r := n1.Graph("POST", "/groups", map[string]any{"displayName": "cluster-signers", "mailEnabled": false,
			"mailNickname": "cluster-signers", "securityEnabled": true})
		var g struct{ ID string }
		if json.Unmarshal(r.Body, &g); r.Status != 201 || g.ID == "" {
			t.Fatalf("creating a group: %d %s", r.Status, r.Body)
		}
		if r := n1.Graph("POST", "/groups/"+g.ID+"/members/$ref", map[string]string{
			"@odata.id": c.nodes[0].boot.AuthorityHost + "v1.0/directoryObjects/" + sp.ObjectID}); r.Status != 204 {
			t.Fatalf("adding the member: %d %s", r.Status, r.Body)
		}
		n1.Assign(g.ID, rbac.CryptoUserID, "/keys")
		on1 := n1.KeysClient(n1.Credential(sp.AppID, sp.Secret))
		eventually(t, time.Second, "signing through node 1 as a member", func() error { return sign(on1, "shared") })
		if r := n3.Graph("DELETE", "/groups/"+g.ID+"/members/"+sp.ObjectID+"/$ref", nil); r.Status != 204 {
			t.Fatalf("removing the member through node 3: %d %s", r.Status, r.Body)
		}
		eventually(t, time.Second, "refusal on node 1 after the removal", func() error {
			if st := status(sign(on1, "shared")); st != 403 {
				return fmt.Errorf("status %d", st)
			}
			return nil
		})
	})

	t.Run("a due rotation happens exactly once", func(t *testing.T) {
		_, err := n1.Keys.CreateKey(ctx, "rolling", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM),
			KeyAttributes: &azkeys.KeyAttributes{Expires: to.Ptr(time.Now().Add(24 * time.Hour))}}, nil)
		must(t, err)
		_, err = n2.Keys.UpdateKeyRotationPolicy(ctx, "rolling", azkeys.KeyRotationPolicy{
			Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P60D")},
			LifetimeActions: []*azkeys.LifetimeAction{{Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
				Trigger: &azkeys.LifetimeActionTrigger{TimeBeforeExpiry: to.Ptr("P30D")}}}}, nil)
		must(t, err)
		versions := func() int {
			n := 0
			for pg := n3.Keys.NewListKeyPropertiesVersionsPager("rolling", nil); pg.More(); {
				page, err := pg.NextPage(ctx)
				must(t, err)
				n += len(page.Value)
			}
			return n
		}
		eventually(t, 10*time.Second, "the rotation", func() error {
			if n := versions(); n < 2 {
				return fmt.Errorf("%d versions", n)
			}
			return nil
		})
		time.Sleep(3 * time.Second) // three more rounds on each node
		if n := versions(); n != 2 {
			t.Fatalf("%d versions after the rotation, want 2", n)
		}
	})

	t.Run("a backup started through node 1 reports its status through node 2", func(t *testing.T) {
		az := testenv.StartAzurite(t)
		uri, sas := az.Container("cluster-backups")
		tok := n1.AdminToken("https://managedhsm.azure.net")
		r := n1.Do("POST", "/backup?api-version=7.6", tok, map[string]any{"storageResourceUri": uri, "token": sas})
		var job struct{ JobID, Status string }
		if json.Unmarshal(r.Body, &job); r.Status != 202 || job.JobID == "" {
			t.Fatalf("starting a backup through node 1: %d %s", r.Status, r.Body)
		}
		eventually(t, 20*time.Second, "the backup's status through node 2", func() error {
			r := n2.Do("GET", "/backup/"+job.JobID+"/pending?api-version=7.6", tok, nil)
			if json.Unmarshal(r.Body, &job); r.Status != 200 || job.Status != "Succeeded" {
				return fmt.Errorf("%d %s", r.Status, r.Body)
			}
			return nil
		})
	})

	t.Run("each node audits what it served, exactly once, in a chain that verifies", func(t *testing.T) {
		tok := n1.AdminToken("https://managedhsm.azure.net")
		for i, e := range c.envs {
			if r := e.Do("GET", fmt.Sprintf("/keys/audit-marker-%d?api-version=7.6", i+1), tok, nil); r.Status != 404 {
				t.Fatalf("the marker request through node %d: %d", i+1, r.Status)
			}
		}
		for i, dir := range c.dirs {
			for m := range 3 {
				records := auditRecords(t, dir, fmt.Sprintf("audit-marker-%d", m+1))
				want := 0
				if m == i {
					want = 1
				}
				if len(records) != want {
					t.Fatalf("node %d's journal has %d records of the request through node %d, want %d", i+1, len(records), m+1, want)
				}
				for _, e := range records {
					if e.Node != c.names[i] {
						t.Fatalf("node %d's record names node %q", i+1, e.Node)
					}
				}
			}
			verifyJournal(t, dir)
		}
	})

	t.Run("kill -9 of a node under load loses no acknowledged key, and it rejoins", func(t *testing.T) {
		l := startLoad(t, c.lb1, 4, "killed")
		time.Sleep(time.Second)
		before := l.count()
		c.kill(1)
		time.Sleep(2 * time.Second)
		after := l.count()
		l.stop()
		if after-before < 10 {
			t.Fatalf("only %d keys were created in the 2 s after the kill (%d before)", after-before, before)
		}
		if l.status[500] > 0 {
			t.Fatalf("500s under the kill: %v", l.status)
		}
		l.checkAllReadable(c.envs[0])
		c.start(1)
		must(t, sign(c.envs[1].Keys, "shared"))
		l.checkAllReadable(c.envs[1])
	})

	t.Run("a database outage answers 503, loses no acknowledged write and heals within 15 s", func(t *testing.T) {
		l := startLoad(t, c.lb1, 4, "outage")
		time.Sleep(time.Second)
		c.pg.Stop()
		outage := time.Now()
		// A balancer's readiness probe says why.
		eventually(t, 2*time.Second, "node 1's readiness during the outage", func() error {
			r := n1.Do("GET", n1.Boot.AuthorityHost+"readyz", "", nil)
			if r.Status != 503 || !strings.Contains(string(r.Body), `"store":"unreachable"`) {
				return fmt.Errorf("%d %s", r.Status, r.Body)
			}
			return nil
		})
		// So does the token endpoint, in OAuth's words: a transient
		// failure, never a verdict on the credential.
		boot := c.nodes[0].boot
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {boot.ClientID},
			"client_secret": {boot.ClientSecret}, "scope": {"https://managedhsm.azure.net/.default"}}
		eventually(t, 2*time.Second, "a token request during the outage", func() error {
			resp, err := n1.HTTP.PostForm(boot.AuthorityHost+boot.TenantID+"/oauth2/v2.0/token", form)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 503 || !strings.Contains(string(body), `"error":"temporarily_unavailable"`) || resp.Header.Get("Retry-After") == "" {
				return fmt.Errorf("%d %s", resp.StatusCode, body)
			}
			return nil
		})
		time.Sleep(3*time.Second - time.Since(outage))
		c.pg.Start()
		back := time.Now()
		for i, e := range c.envs {
			eventually(t, 15*time.Second-time.Since(back), fmt.Sprintf("node %d serving after the outage", i+1), func() error {
				return sign(e.Keys, "shared")
			})
		}
		t.Logf("every node served again %v after the database returned", time.Since(back).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		l.stop()
		if l.status[503] == 0 || l.status[500] > 0 || l.status[-1] > 0 {
			t.Fatalf("statuses under the outage: %v (want 503s, no 500, no hang or reset)", l.status)
		}
		for st := range l.status {
			if st != 200 && st != 503 {
				t.Fatalf("statuses under the outage: %v", l.status)
			}
		}
		l.checkAllReadable(c.envs[2])
	})
}

// load creates keys through the balancer from several clients at once.
type load struct {
	t      *testing.T
	mu     sync.Mutex
	acked  []string
	status map[int]int
	done   chan struct{}
	wg     sync.WaitGroup
}

// startLoad runs clients that create keys named prefix-… until stop,
// each over its own connections (so the balancer spreads them). Their
// SDK clients do not retry: every answer is counted as it came.
func startLoad(t *testing.T, lb *servertest.Env, clients int, prefix string) *load {
	l := &load{t: t, status: map[int]int{}, done: make(chan struct{})}
	tok := lb.AdminToken("https://managedhsm.azure.net")
	for w := range clients {
		hc := servertest.HTTPClient(t, lb.Boot.CAFile)
		hc.Timeout = 20 * time.Second
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				name := prefix + "-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				req, _ := http.NewRequest("POST", lb.Boot.HSMURI+"/keys/"+name+"/create?api-version=7.6",
					strings.NewReader(`{"kty":"EC-HSM","crv":"P-256"}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				st := -1
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					st = resp.StatusCode
				} else if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF") {
					st = -2 // the node died with the request: not acknowledged
				}
				l.mu.Lock()
				l.status[st]++
				if st == 200 {
					l.acked = append(l.acked, name)
				}
				l.mu.Unlock()
				if st != 200 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *load) stop() {
	close(l.done)
	l.wg.Wait()
	l.t.Logf("load: %d keys acknowledged; statuses %v", len(l.acked), l.status)
}

// checkAllReadable reads every acknowledged key through e.
func (l *load) checkAllReadable(e *servertest.Env) {
	l.t.Helper()
	tok := e.AdminToken("https://managedhsm.azure.net")
	for _, name := range l.acked {
		if r := e.Do("GET", "/keys/"+name+"?api-version=7.6", tok, nil); r.Status != 200 {
			l.t.Fatalf("acknowledged key %s: %d %s", name, r.Status, r.Body)
		}
	}
}

// auditRecords returns the records in dir's journal whose request URI
// contains marker.
func auditRecords(t *testing.T, dir, marker string) []audit.Event {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	must(t, err)
	var out []audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		must(t, err)
		for _, line := range bytes.Split(data, []byte("\n")) {
			if !bytes.Contains(line, []byte(marker)) {
				continue
			}
			var e audit.Event
			must(t, json.Unmarshal(line, &e))
			out = append(out, e)
		}
	}
	return out
}

// verifyJournal checks the chain of every stream in dir's journal.
func verifyJournal(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	must(t, err)
	if len(files) == 0 {
		t.Fatalf("no journal in %s", dir)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		must(t, err)
		_, err = audit.Verify(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
