package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/servertest"
)

// TestHSMCommandsUseArmkeyvault: keyvault create, show, list, delete,
// show-deleted and purge go through armkeyvault's ManagedHsmsClient (the
// server's audit records of their requests carry its User-Agent), print
// the server's resource as it sent it, and show its errors as
// "ERROR: (Code) message".
func TestHSMCommandsUseArmkeyvault(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	me := admin.ok("ad", "sp", "show", "--id", b.ClientID, "--query", "id", "-o", "tsv")
	sub := admin.ok("account", "show", "--query", "id", "-o", "tsv")
	tok := env.AdminToken("https://management.azure.com")
	path := "subscriptions/" + sub + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/sdk-made?api-version=2024-11-01"

	created := admin.ok("keyvault", "create", "--hsm-name", "sdk-made", "-g", "keyward", "--administrators", me, "--retention-days", "7")
	var want, got any
	// (This request, the test's own, is told apart by its User-Agent.)
	jsonDecode(t, string(env.DoWithHeaders("GET", b.AuthorityHost+path, tok, nil, map[string]string{"User-Agent": "hsm-test"}).Body), &want)
	want.(map[string]any)["resourceGroup"] = "keyward" // az adds it to every result whose id names one
	managedHSMModel.apply(want.(map[string]any))       // and prints the model's unset attributes as null
	for _, out := range []string{created, admin.ok("keyvault", "show", "--hsm-name", "sdk-made"), admin.ok("keyvault", "show", "--hsm-name", "SDK-MADE", "-g", "keyward")} {
		jsonDecode(t, out, &got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the CLI prints\n%s\nthe server sent\n%v", out, want)
		}
	}
	var listed []any
	jsonDecode(t, admin.ok("keyvault", "list", "-g", "keyward", "--query", "[?name=='sdk-made']"), &listed)
	if len(listed) != 1 || !reflect.DeepEqual(listed[0], want) {
		t.Fatalf("list: %v", listed)
	}
	if got := admin.ok("keyvault", "list", "-o", "tsv", "--query", "sort([].name)"); got != "dev\nsdk-made" {
		t.Fatalf("list by subscription: %q", got)
	}

	admin.ok("keyvault", "delete", "--hsm-name", "sdk-made")
	const gone = "The Resource 'Microsoft.KeyVault/managedHSMs/sdk-made' under resource group 'keyward' was not found."
	if _, errs, code := admin.run("", "keyvault", "show", "--hsm-name", "sdk-made", "-g", "keyward"); code != 3 ||
		errs != "ERROR: (ResourceNotFound) "+gone+"\nCode: ResourceNotFound\nMessage: "+gone+"\n" {
		t.Fatalf("show after delete: %d %q", code, errs)
	}
	if _, errs, code := admin.run("", "keyvault", "delete", "--hsm-name", "sdk-made"); code != 3 || !strings.HasPrefix(errs, "ERROR: (ResourceNotFound) no managed HSM is named sdk-made\nCode: ResourceNotFound\n") {
		t.Fatalf("delete again: %d %q", code, errs)
	}
	if got := admin.ok("keyvault", "show-deleted", "--hsm-name", "sdk-made", "--query", "properties.mhsmId", "-o", "tsv"); !strings.HasSuffix(got, "/managedHSMs/sdk-made") {
		t.Fatalf("show-deleted: %q", got)
	}
	admin.ok("keyvault", "purge", "--hsm-name", "sdk-made")
	if _, errs, code := admin.run("", "keyvault", "purge", "--hsm-name", "sdk-made"); code != 3 || !strings.HasPrefix(errs, "ERROR: (ResourceNotFound) ") {
		t.Fatalf("purge again: %d %q", code, errs)
	}

	// Every request of those commands came from armkeyvault.
	want4 := []string{"/managedHSMs/sdk-made?", "/managedHSMs?", "/deletedManagedHSMs/sdk-made?", "/deletedManagedHSMs/sdk-made/purge?"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		agents := armAgents(t, filepath.Join(env.Dir, "audit"))
		missing := ""
		for _, w := range want4 {
			if len(agents[w]) == 0 {
				missing = w
			}
			for _, ua := range agents[w] {
				if !strings.HasPrefix(ua, "azsdk-go-armkeyvault/") {
					t.Fatalf("a request for %s came from %q", w, ua)
				}
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record of a request for %s: %v", missing, agents)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// armAgents reads the audit journals in dir and returns, for each HSM
// resource path the CLI's commands above ask for, the clientInfo
// (User-Agent) of the requests for it.
func armAgents(t *testing.T, dir string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	must(t, err)
	agents := map[string][]string{}
	for _, f := range files {
		fh, err := os.Open(f)
		must(t, err)
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct {
				ClientInfo string `json:"clientInfo"`
				RequestURI string `json:"requestUri"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.ClientInfo == "hsm-test" {
				continue
			}
			for _, p := range []string{"/managedHSMs/sdk-made?", "/managedHSMs?", "/deletedManagedHSMs/sdk-made?", "/deletedManagedHSMs/sdk-made/purge?"} {
				if strings.Contains(rec.RequestURI, p) {
					agents[p] = append(agents[p], rec.ClientInfo)
				}
			}
		}
		fh.Close()
	}
	return agents
}
